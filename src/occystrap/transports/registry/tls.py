"""TLS settings per registry host: system CAs plus docker-style ``certs.d`` directories.

Verification is on by default. For a host ``HOST[:PORT]`` the CA files (``*.crt``) and client
pairs (``NAME.cert`` + ``NAME.key``) found in ``/etc/docker/certs.d/HOST/``,
``/etc/containers/certs.d/HOST/``, ``~/.config/containers/certs.d/HOST/`` and any extra
``certs.d`` root are added to the system trust store; ``cert_dir`` (skopeo's ``--cert-dir``)
is read the same way but directly, for every host. Verification is switched off, and plain
HTTP is used, only for the hosts named in ``no_verify_hosts`` / ``insecure_hosts``.

Loading the system's CA certificates takes tens of milliseconds of CPU (55 ms on the
benchmark machine), with the GIL released. :func:`prepare` starts it in a thread of its own
as soon as a run knows it will talk TLS, so that it overlaps with the imports and set-up
before the first request; :meth:`TLSConfig.context` takes a context made ahead when there is
one (each is used once), and makes one itself otherwise.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ...errors import InvalidOption

log = logging.getLogger(__name__)

SYSTEM_CERTS_D = ("/etc/docker/certs.d", "/etc/containers/certs.d")


def _user_certs_d() -> tuple[str, ...]:
    home = os.environ.get("HOME")
    return (os.path.join(home, ".config", "containers", "certs.d"),) if home else ()


@dataclass(frozen=True)
class TLSConfig:
    """How to talk TLS to registries; one value for a whole run."""

    ca_file: str | None = None
    cert_dir: str | None = None
    certs_d_roots: tuple[str, ...] = SYSTEM_CERTS_D
    no_verify_hosts: frozenset[str] = frozenset()
    insecure_hosts: frozenset[str] = frozenset()
    user_certs_d: bool = True

    def is_insecure(self, host: str) -> bool:
        """Plain HTTP for ``host``? Only when it was named explicitly."""
        return _matches(host, self.insecure_hosts)

    def verifies(self, host: str) -> bool:
        return not _matches(host, self.no_verify_hosts)

    def scheme(self, host: str) -> str:
        return "http" if self.is_insecure(host) else "https"

    def host_dirs(self, host: str) -> list[Path]:
        """The certificate directories that apply to ``host``, existing ones only."""
        roots = list(self.certs_d_roots) + (list(_user_certs_d()) if self.user_certs_d else [])
        dirs = [Path(root) / host for root in roots]
        if self.cert_dir:
            dirs.append(Path(self.cert_dir))
        return [d for d in dirs if d.is_dir()]

    def context(self, host: str) -> ssl.SSLContext:
        """An SSLContext for ``host`` (usable as httpx's ``verify``)."""
        ctx = _system_context()
        if self.ca_file:
            _load_ca(ctx, Path(self.ca_file))
        for directory in self.host_dirs(host):
            _load_dir(ctx, directory)
        if not self.verifies(host):
            log.warning("TLS certificate verification is disabled for %s", host)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def plain_hosts(run_hosts: Iterable[str], host: str, insecure: bool) -> frozenset[str]:
    """The hosts reached over plain HTTP: the run's (``RegistrySettings.insecure_hosts``),
    and ``host`` too when its URI says ``?insecure=true``."""
    return frozenset(run_hosts) | ({host} if insecure else frozenset())


class _Ahead:
    """One context with the system's CA certificates, made in a thread of its own."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.context: ssl.SSLContext | None = None
        threading.Thread(target=self._make, name="tls-ahead", daemon=True).start()

    def _make(self) -> None:
        try:
            self.context = ssl.create_default_context()
        except Exception:  # made again where it is needed, and the error raised there
            log.debug("loading the system CA certificates ahead failed", exc_info=True)
        finally:
            self.done.set()


_ahead: list[_Ahead] = []
_ahead_lock = threading.Lock()


def prepare() -> Callable[[], None]:
    """Start making a context with the system's CA certificates for the next
    :meth:`TLSConfig.context` (call once per TLS connection pool the run will open).

    Returns what drops it when no context was taken by the end of the run (a run that
    failed first), so a long-lived process never piles up contexts made ahead."""
    ahead = _Ahead()
    with _ahead_lock:
        _ahead.append(ahead)

    def release() -> None:
        with _ahead_lock:
            if ahead in _ahead:
                _ahead.remove(ahead)

    return release


def _system_context() -> ssl.SSLContext:
    """A new context that verifies against the system's CAs: one made ahead if any."""
    with _ahead_lock:
        ahead = _ahead.pop(0) if _ahead else None
    if ahead is not None:
        ahead.done.wait()
        if ahead.context is not None:
            return ahead.context
    return ssl.create_default_context()


def _matches(host: str, hosts: frozenset[str]) -> bool:
    if host in hosts:
        return True
    bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return bare in hosts or "*" in hosts


def _load_ca(ctx: ssl.SSLContext, path: Path) -> None:
    try:
        ctx.load_verify_locations(cafile=str(path))
    except (OSError, ssl.SSLError) as e:
        raise InvalidOption(f"cannot load CA certificates from {path}: {_reason(e)}") from None


def _load_dir(ctx: ssl.SSLContext, directory: Path) -> None:
    try:
        names = sorted(p.name for p in directory.iterdir())
    except OSError as e:
        raise InvalidOption(
            f"cannot read certificate directory {directory}: {_reason(e)}"
        ) from None
    for name in names:
        if name.endswith(".crt"):
            log.debug("trusting CA %s", directory / name)
            _load_ca(ctx, directory / name)
        elif name.endswith(".cert"):
            key = directory / (name[: -len(".cert")] + ".key")
            if not key.is_file():
                raise InvalidOption(
                    f"client certificate {directory / name} has no matching {key.name}"
                )
            try:
                ctx.load_cert_chain(str(directory / name), str(key))
            except (OSError, ssl.SSLError) as e:
                raise InvalidOption(
                    f"cannot load client certificate {directory / name}: {_reason(e)}"
                ) from None
            log.debug("using client certificate %s", directory / name)
        elif name.endswith(".key"):
            cert = directory / (name[: -len(".key")] + ".cert")
            if not cert.is_file():
                raise InvalidOption(f"client key {directory / name} has no matching {cert.name}")


def _reason(e: BaseException) -> str:
    return (getattr(e, "strerror", None) or str(e) or type(e).__name__).splitlines()[0]
