"""Registry credentials: explicit values, auth files, credential helpers; plus secret redaction.

Lookup order for a host: explicit username/password (CLI), ``OCCYSTRAP_USERNAME`` /
``OCCYSTRAP_PASSWORD``, then the first file that knows the host among ``$REGISTRY_AUTH_FILE``,
``$XDG_RUNTIME_DIR/containers/auth.json``, ``~/.config/containers/auth.json``,
``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``) and ``~/.dockercfg``.
Within a file: ``credHelpers[host]``, then ``auths[host]`` (``auth`` = base64 ``user:pass``,
or ``identitytoken``), then ``credsStore``. Docker Hub is also looked up under
``https://index.docker.io/v1/``. A helper is ``docker-credential-NAME get`` with the server
on stdin, answering ``{"Username", "Secret"}``; the username ``<token>`` marks an identity token.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import AuthenticationError, InvalidOption, MalformedInput
from .reference import DOCKER_HUB, HUB_ALIASES

log = logging.getLogger(__name__)

HUB_KEY = "https://index.docker.io/v1/"
_HELPER_TIMEOUT = 60.0


@dataclass(frozen=True)
class Credentials:
    """A username/password pair or an identity (refresh) token; repr never shows secrets."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    source: str = "explicit"

    def __repr__(self) -> str:
        secret = "***" if self.password else None
        token = "***" if self.identity_token else None
        return (
            f"Credentials(username={self.username!r}, password={secret!r}, "
            f"identity_token={token!r}, source={self.source!r})"
        )

    __str__ = __repr__

    @property
    def has_password(self) -> bool:
        return self.username is not None and self.password is not None

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.identity_token) if s)


def lookup(
    host: str,
    *,
    username: str | None = None,
    password: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Credentials | None:
    """Credentials for registry ``host`` (``HOST[:PORT]``), or None for anonymous access."""
    env = os.environ if env is None else env
    if username is None and password is None:
        username, password = env.get("OCCYSTRAP_USERNAME"), env.get("OCCYSTRAP_PASSWORD")
        source = "OCCYSTRAP_USERNAME/OCCYSTRAP_PASSWORD"
    else:
        source = "--username/--password"
    if username is not None or password is not None:
        if not username or password is None:
            raise InvalidOption(f"{source}: a username needs a password and a password a username")
        return Credentials(username, password, None, source)
    for path in auth_files(env):
        found = from_file(path, host, env)
        if found is not None:
            return found
    return None


def auth_files(env: Mapping[str, str]) -> list[Path]:
    """Candidate auth files in search order (existing or not)."""
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    files: list[Path] = []
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("XDG_RUNTIME_DIR"):
        files.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    files.append(home / ".config" / "containers" / "auth.json")
    docker_dir = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else home / ".docker"
    files.append(docker_dir / "config.json")
    files.append(home / ".dockercfg")
    return files


def from_file(path: Path, host: str, env: Mapping[str, str] | None = None) -> Credentials | None:
    """Credentials for ``host`` from one docker/podman auth file, or None."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("cannot read auth file %s: %s", path, e.strerror or e)
        return None
    try:
        doc = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as e:
        raise MalformedInput(f"auth file {path} is not valid JSON (line {e.lineno})") from None
    if not isinstance(doc, dict):
        raise MalformedInput(f"auth file {path} is not a JSON object")
    keys = _keys_for(host)
    helpers = doc.get("credHelpers")
    if isinstance(helpers, dict):
        for key in keys:
            if isinstance(helpers.get(key), str):
                return run_helper(helpers[key], _server_for(host), env)
    auths = doc.get("auths") if "auths" in doc or path.name != ".dockercfg" else doc
    if isinstance(auths, dict):
        entry = _find_entry(auths, keys)
        if entry is not None:
            creds = _decode_entry(entry, path)
            if creds is not None:
                return creds
    store = doc.get("credsStore")
    if isinstance(store, str) and store:
        return run_helper(store, _server_for(host), env)
    return None


def run_helper(name: str, server: str, env: Mapping[str, str] | None = None) -> Credentials | None:
    """Ask ``docker-credential-NAME get`` for ``server``; None when it knows nothing."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise MalformedInput(f"invalid credential helper name {name[:60]!r}")
    program = f"docker-credential-{name}"
    import subprocess  # loaded only when a helper is configured

    try:
        proc = subprocess.run(
            [program, "get"],
            input=server.encode(),
            capture_output=True,
            timeout=_HELPER_TIMEOUT,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except FileNotFoundError:
        log.warning("credential helper %s is not on PATH; continuing without it", program)
        return None
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AuthenticationError(
            f"credential helper {program} failed: {type(e).__name__}"
        ) from None
    if proc.returncode != 0:
        message = (
            proc.stdout.decode(errors="replace").strip()
            or proc.stderr.decode(errors="replace").strip()
        )
        if "not found" in message.lower():
            return None
        first = message.splitlines()[0][:200] if message else f"exit status {proc.returncode}"
        raise AuthenticationError(f"credential helper {program} failed for {server}: {first}")
    try:
        answer = json.loads(proc.stdout)
        user, secret = answer.get("Username"), answer.get("Secret")
    except (json.JSONDecodeError, AttributeError):
        raise MalformedInput(f"credential helper {program} did not answer with JSON") from None
    if not isinstance(secret, str) or not secret:
        return None
    if user == "<token>":
        return Credentials(None, None, secret, program)
    return Credentials(str(user or ""), secret, None, program)


def _keys_for(host: str) -> list[str]:
    if host in HUB_ALIASES:
        return [HUB_KEY, "docker.io", "index.docker.io", DOCKER_HUB, "registry.hub.docker.com"]
    return [host]


def _server_for(host: str) -> str:
    return HUB_KEY if host in HUB_ALIASES else host


def _normalise_key(key: str) -> str:
    key = re.sub(r"^[a-z]+://", "", key.strip())
    return (
        key.split("/", 1)[0].lower()
        if key.endswith(("/v1/", "/v2/", "/v1", "/v2"))
        else key.lower()
    )


def _find_entry(auths: Mapping[str, Any], keys: Iterable[str]) -> Mapping[str, Any] | None:
    for want in keys:
        if isinstance(auths.get(want), dict):
            return auths[want]  # type: ignore[no-any-return]
    normalised = {_normalise_key(k): v for k, v in auths.items() if isinstance(v, dict)}
    for want in keys:
        hit = normalised.get(_normalise_key(want))
        if hit is not None:
            return hit
    return None


def _decode_entry(entry: Mapping[str, Any], path: Path) -> Credentials | None:
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        return Credentials(None, None, token, str(path))
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, sep, password = base64.b64decode(auth, validate=False).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise MalformedInput(
                f"auth file {path}: an 'auth' value is not base64 'user:password'"
            ) from None
        if not sep:
            raise MalformedInput(f"auth file {path}: an 'auth' value is not base64 'user:password'")
        return Credentials(user, password, None, str(path))
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return Credentials(name, secret, None, str(path))
    return None


# ---- redaction -------------------------------------------------------------------------

_PATTERNS = re.compile(
    r"(?i)(authorization\s*[:=]\s*)(?:bearer|basic)?\s*[^\s,;\"']+"
    r"|((?:bearer|basic)\s+)[A-Za-z0-9\-._~+/=]{8,}"
    r"|((?:access_token|refresh_token|token|password|secret|identitytoken)[\"']?\s*[:=]\s*[\"']?)[^\s&,;\"']+"
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with tokens, Authorization values and the given secrets replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return _PATTERNS.sub(lambda m: (m.group(1) or m.group(2) or m.group(3) or "") + "***", text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts every record's formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


log.addFilter(RedactingFilter())
