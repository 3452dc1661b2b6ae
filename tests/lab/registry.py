"""A real docker-registry (distribution 2.8) on 127.0.0.1, in one of five modes.

Modes: ``plain`` (HTTP, anonymous), ``auth`` (HTTP + htpasswd bcrypt testuser/testpass),
``tls`` (HTTPS with a lab CA), ``tls-auth`` (both) and ``token`` (HTTP + Bearer tokens from
the lab token server; anonymous callers may only pull). The registry binds port 0 and the
real port is read from its log, so parallel sessions never collide.
"""

from __future__ import annotations

import base64
import json
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Literal

from . import certs
from .procs import Service, port_from_log, start_service, tail, wait_until
from .tools import require, run

Mode = Literal["plain", "auth", "tls", "tls-auth", "token"]
MODES: tuple[Mode, ...] = ("plain", "auth", "tls", "tls-auth", "token")
USERNAME = "testuser"
PASSWORD = "testpass"
TOKEN_SERVICE = "lab-registry"
TOKEN_ISSUER = "lab-issuer"


@dataclass
class Registry:
    """A running registry. ``host`` is ``127.0.0.1:PORT``; ``url`` is ``SCHEME://host``."""

    mode: Mode
    host: str
    scheme: str
    workdir: Path
    log_file: Path
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None  # CA to trust (TLS modes)
    certs_d: Path | None = None  # directory with ca.crt for skopeo/podman --cert-dir
    token_url: str | None = None  # token realm (token mode)
    services: list[Service] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def creds(self) -> str | None:
        """``user:password`` or None."""
        return f"{self.username}:{self.password}" if self.username else None

    def ref(self, repo: str, tag: str = "latest") -> str:
        """A skopeo reference: ``docker://127.0.0.1:PORT/REPO:TAG`` (``@sha256:`` kept as is)."""
        sep = "" if tag.startswith("@") else ":"
        return f"docker://{self.host}/{repo}{sep}{tag}"

    def skopeo_args(
        self, kind: Literal["src", "dest", "plain"] = "dest", anonymous: bool = False
    ) -> list[str]:
        """skopeo flags for this registry: ``--KIND-tls-verify``/``--KIND-cert-dir``/``--KIND-creds``.

        ``kind="plain"`` gives the unprefixed flags of ``inspect``/``list-tags``/``delete``.
        """
        prefix = "--" if kind == "plain" else f"--{kind}-"
        args = (
            [f"{prefix}cert-dir={self.certs_d}"] if self.certs_d else [f"{prefix}tls-verify=false"]
        )
        if self.creds and not anonymous:
            args.append(f"{prefix}creds={self.creds}")
        return args

    def ssl_context(self) -> ssl.SSLContext | None:
        """An SSL context trusting the lab CA (None for plain-HTTP modes)."""
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None

    def stop(self) -> None:
        """Stop the registry and the token server (if any)."""
        for service in reversed(self.services):
            service.stop()


def http_get(
    url: str,
    context: ssl.SSLContext | None = None,
    auth: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, Message, bytes]:
    """GET ``url`` bypassing any proxy; ``auth`` is ``user:password`` for Basic auth.

    Returns (status, headers, body) for every HTTP status, including errors.
    """
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    request = urllib.request.Request(url, headers=dict(headers or {}))
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.build_opener(*handlers).open(request, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def _status(url: str, context: ssl.SSLContext | None) -> int:
    return http_get(url, context, timeout=2)[0]


def _config(mode: Mode, workdir: Path, auth_yaml: str, tls_yaml: str) -> str:
    return f"""version: 0.1
log:
  level: info
  fields:
    service: registry-{mode}
storage:
  filesystem:
    rootdirectory: {json.dumps(str(workdir / "data"))}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:0
  secret: lab-secret-{mode}
{tls_yaml}{auth_yaml}"""


def _start_token_server(workdir: Path) -> tuple[Service, str, Path]:
    key_file, cert_file = certs.make_signing_cert(workdir)
    port_file = workdir / "token.port"
    port_file.unlink(missing_ok=True)
    script = Path(__file__).with_name("token_server.py")
    cmd = [sys.executable, str(script), "--key", str(key_file), "--cert", str(cert_file)]
    cmd += ["--issuer", TOKEN_ISSUER, "--service", TOKEN_SERVICE, "--port-file", str(port_file)]
    cmd += ["--user", f"{USERNAME}:{PASSWORD}"]
    service = start_service("token", cmd, workdir)
    try:
        wait_until(port_file.exists, 15, "the token server port file")
        realm = f"http://127.0.0.1:{int(port_file.read_text())}/token"
        wait_until(
            lambda: _status(f"{realm}?service={TOKEN_SERVICE}", None) == 200, 10, "the token server"
        )
    except (TimeoutError, ValueError) as err:
        service.stop()
        raise RuntimeError(f"token server did not start: {err}\n{tail(service.log_file)}") from err
    return service, realm, cert_file


def start_registry(mode: Mode, workdir: Path) -> Registry:
    """Start a registry in ``mode`` with all its files (config, data, certs, logs) in ``workdir``."""
    if mode not in MODES:
        raise ValueError(f"unknown registry mode {mode!r}")
    binary = require("docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    reg = Registry(mode, "", "http", workdir, workdir / "registry.log")
    auth_yaml = tls_yaml = ""
    if mode in ("auth", "tls-auth"):
        line = run([require("htpasswd"), "-Bbn", USERNAME, PASSWORD]).stdout.strip()
        (workdir / "htpasswd").write_text(line + "\n")
        auth_yaml = (
            "auth:\n  htpasswd:\n    realm: lab-realm\n"
            f"    path: {json.dumps(str(workdir / 'htpasswd'))}\n"
        )
    if mode in ("tls", "tls-auth"):
        tls = certs.make_tls_files(workdir / "tls")
        reg.scheme, reg.ca_file, reg.certs_d = "https", tls.ca_file, tls.certs_d
        tls_yaml = (
            f"  tls:\n    certificate: {json.dumps(str(tls.cert_file))}\n"
            f"    key: {json.dumps(str(tls.key_file))}\n"
        )
    if mode in ("auth", "tls-auth", "token"):
        reg.username, reg.password = USERNAME, PASSWORD
    try:
        if mode == "token":
            token_service, reg.token_url, cert_file = _start_token_server(workdir)
            reg.services.append(token_service)
            auth_yaml = (
                f"auth:\n  token:\n    realm: {json.dumps(reg.token_url)}\n"
                f"    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n"
                f"    rootcertbundle: {json.dumps(str(cert_file))}\n"
            )
        config = workdir / "config.yml"
        config.write_text(_config(mode, workdir, auth_yaml, tls_yaml))
        offset = reg.log_file.stat().st_size if reg.log_file.exists() else 0
        service = start_service("registry", [binary, "serve", str(config)], workdir)
        reg.services.append(service)
        pattern = r"listening on 127\.0\.0\.1:(\d+)"
        port = port_from_log(service.log_file, pattern, 15, service.proc, offset)
        reg.host = f"127.0.0.1:{port}"
        context = reg.ssl_context()
        wait_until(lambda: _status(f"{reg.url}/v2/", context) in (200, 401), 15, f"{reg.url}/v2/")
    except Exception as err:
        reg.stop()
        raise RuntimeError(f"registry ({mode}) did not start: {err}\n{tail(reg.log_file)}") from err
    except BaseException:
        reg.stop()
        raise
    return reg
