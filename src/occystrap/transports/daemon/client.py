"""A small Docker Engine API client over a unix socket (dockerd and podman's compat service).

The socket comes from an explicit path (``?socket=``), else ``DOCKER_HOST`` (``unix://`` only),
else ``/var/run/docker.sock``. On first use the client asks ``/_ping`` (or ``/version``) for the
daemon's API version and speaks ``min(daemon, MAX_API_VERSION)`` with a ``/vX.Y`` prefix on every
call: podman 4 and dockerd 20.10 both report 1.41, and dockerd rejects newer prefixes with 400.

Image bodies stream both ways: :meth:`DaemonClient.export_image` returns a buffered reader over
the response, :meth:`DaemonClient.load_image` sends a chunked request from an iterable or reader.
Daemons report load failures in two ways, both raised as :class:`DaemonError`: podman answers
HTTP 500 with ``{"message": …}``, dockerd answers 200 and puts ``{"errorDetail": …}`` in the stream.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from ...closing import Closing
from ...errors import DaemonError, ImageNotFound, InvalidOption
from ...model.descriptor import Platform

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "/var/run/docker.sock"
MAX_API_VERSION = (1, 48)  # the first version with ``platform`` on /images/{name}/get
MIN_API_VERSION = (1, 24)
PLATFORM_API_VERSION = (1, 48)
CHUNK = 1 << 20


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def resolve_socket(socket_path: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The socket path: ``socket_path``, else ``$DOCKER_HOST`` (unix:// only), else the default."""
    env = os.environ if environ is None else environ
    where, value = (
        ("socket", socket_path) if socket_path else ("DOCKER_HOST", env.get("DOCKER_HOST"))
    )
    value = (value or "").strip()
    if not value:
        return DEFAULT_SOCKET
    if value.startswith("unix://"):
        value = value[len("unix://") :]
    elif "://" in value:
        raise InvalidOption(
            f"{where}={value} is not supported: only unix sockets are (unix:///path/to/docker.sock)"
        )
    if not value:
        raise InvalidOption(f"{where}=unix:// names no socket path")
    return value


def parse_api_version(text: object) -> tuple[int, int]:
    """``"1.41"`` -> ``(1, 41)``; DaemonError when the daemon sent something else."""
    try:
        major, minor = str(text).strip().split(".")
        return int(major), int(minor)
    except ValueError:
        raise DaemonError(f"the daemon reported a bad API version {str(text)[:40]!r}") from None


def _one_line(text: str, limit: int = 400) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _errno_of(exc: BaseException | None) -> int | None:
    for _ in range(10):  # httpx.ConnectError <- httpcore.ConnectError <- OSError
        if exc is None or (isinstance(exc, OSError) and exc.errno is not None):
            break
        exc = exc.__cause__ or exc.__context__
    return exc.errno if isinstance(exc, OSError) else None


def _body_chunks(data: Iterable[bytes] | Readable) -> Iterator[bytes]:
    if isinstance(data, bytes | bytearray | memoryview):
        yield bytes(data)
    elif hasattr(data, "read"):
        while chunk := data.read(CHUNK):
            yield bytes(chunk)
    else:
        yield from (bytes(piece) for piece in data if piece)


class _ResponseStream(io.RawIOBase):
    """The body of a streamed response as a raw binary stream; closing it closes the response."""

    def __init__(self, response: httpx.Response, what: str) -> None:
        self._response = response
        self._chunks = response.iter_bytes()
        self._pending = memoryview(b"")
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = memoryview(next(self._chunks))
            except StopIteration:
                return 0
            except httpx.HTTPError as exc:
                raise DaemonError(f"{self._what} broke off: {_one_line(str(exc))}") from None
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._response.close()
        super().close()


class DaemonClient(Closing):
    """The Engine API calls occystrap needs, on one unix socket. Safe to share between threads."""

    def __init__(
        self,
        socket_path: str | None = None,
        *,
        timeout: float | None = 600.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.socket_path = resolve_socket(socket_path, environ)
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=self.socket_path),
            base_url="http://docker",
            timeout=httpx.Timeout(timeout, connect=10.0),
        )
        self._api: tuple[int, int] | None = None
        self._version_info: dict[str, Any] | None = None

    def close(self) -> None:
        self._http.close()

    @property
    def api_version(self) -> str:
        """The negotiated API version, e.g. ``"1.41"`` (asks the daemon on first use)."""
        if self._api is None:
            self._api = self._negotiate()
        return f"{self._api[0]}.{self._api[1]}"

    def supports(self, version: tuple[int, int]) -> bool:
        """True when the negotiated API version is at least ``version``."""
        return parse_api_version(self.api_version) >= version

    def _negotiate(self) -> tuple[int, int]:
        try:
            if not stat.S_ISSOCK(os.stat(self.socket_path).st_mode):
                raise DaemonError(
                    f"{self.socket_path} is not a unix socket (set DOCKER_HOST or ?socket=)"
                )
        except OSError as exc:
            raise self._connect_error(exc) from None
        header = self._request("GET", "/_ping", "ping").headers.get("api-version")
        server = parse_api_version(header or self.version().get("ApiVersion"))
        if server < MIN_API_VERSION:
            raise DaemonError(
                f"the daemon at {self.socket_path} speaks Engine API {server[0]}.{server[1]};"
                f" occystrap needs at least {MIN_API_VERSION[0]}.{MIN_API_VERSION[1]}"
            )
        log.debug(
            "daemon %s: API %d.%d, ours up to %d.%d", self.socket_path, *server, *MAX_API_VERSION
        )
        return min(server, MAX_API_VERSION)

    def version(self) -> dict[str, Any]:
        """``GET /version`` (unversioned): ApiVersion, Version, Os, Arch, Components..."""
        if self._version_info is None:
            self._version_info = self._json(self._request("GET", "/version", "version query"), dict)
        return self._version_info

    # -- image calls ------------------------------------------------------------------------

    def inspect_image(self, name: str) -> dict[str, Any]:
        """``GET /images/{name}/json``; ImageNotFound when the daemon has no such image."""
        path = f"/images/{_quote(name)}/json"
        info: dict[str, Any] = self._json(
            self._request("GET", path, f"inspect {name}", image=name), dict
        )
        return info

    def list_images(self) -> list[dict[str, Any]]:
        """``GET /images/json``: one summary per image (Id, RepoTags, Size...)."""
        images = self._json(self._request("GET", "/images/json", "image list"), list)
        return [i for i in images if isinstance(i, dict)]

    def tag_image(self, source: str, repo: str, tag: str = "latest") -> None:
        """``POST /images/{source}/tag?repo=REPO&tag=TAG``."""
        path, params = f"/images/{_quote(source)}/tag", {"repo": repo, "tag": tag}
        self._request("POST", path, f"tag of {source}", image=source, params=params)

    def remove_image(self, name: str, *, force: bool = False) -> list[dict[str, Any]]:
        """``DELETE /images/{name}``; returns the daemon's Untagged/Deleted report."""
        params = {"force": "1" if force else "0"}
        response = self._request(
            "DELETE", f"/images/{_quote(name)}", f"removal of {name}", image=name, params=params
        )
        report = self._json(response, list) if response.content.strip() else []
        return [r for r in report if isinstance(r, dict)]

    def export_image(self, name: str, platform: str | Platform | None = None) -> io.BufferedReader:
        """``GET /images/{name}/get`` as a reader of the docker-save tar stream (close it).

        ``platform`` is sent only to daemons speaking API >= 1.48; older daemons can export only
        their native platform, and asking them for another one raises InvalidOption.
        """
        params: dict[str, str] = {}
        if platform is not None:
            wanted = platform if isinstance(platform, Platform) else Platform.parse(platform)
            if self.supports(PLATFORM_API_VERSION):
                params["platform"] = json.dumps(wanted.to_json(), separators=(",", ":"))
            else:
                self._require_native(wanted)
        what = f"export of {name} from the daemon at {self.socket_path}"
        path = f"/images/{_quote(name)}/get"
        response = self._request("GET", path, what, image=name, params=params, stream=True)
        return io.BufferedReader(_ResponseStream(response, what), buffer_size=CHUNK)

    def _require_native(self, wanted: Platform) -> None:
        info = self.version()
        if (wanted.os, wanted.architecture) != (info.get("Os"), info.get("Arch")):
            text = "/".join(p for p in (wanted.os, wanted.architecture, wanted.variant) if p)
            raise InvalidOption(
                f"platform={text} needs Engine API >= 1.48, but the daemon at {self.socket_path}"
                f" speaks {self.api_version} and exports only {info.get('Os')}/{info.get('Arch')}"
            )

    def load_image(self, data: Iterable[bytes] | Readable, *, quiet: bool = True) -> list[str]:
        """``POST /images/load`` of a docker-save tar, streamed with chunked transfer.

        Returns the names (``Loaded image: …``) and ids (``Loaded image ID: …``) the daemon
        reports. Errors raised by ``data`` itself propagate unchanged (the daemon loads nothing).
        """
        response = self._request(
            "POST",
            "/images/load",
            "image load",
            params={"quiet": "1" if quiet else "0"},
            content=_body_chunks(data),
            headers={"Content-Type": "application/x-tar"},
            stream=True,
        )
        loaded: list[str] = []
        try:
            for line in response.iter_lines():
                if line.strip():
                    loaded.extend(self._load_message(line))
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, "image load") from None
        finally:
            response.close()
        return loaded

    def _load_message(self, line: str) -> list[str]:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            raise DaemonError(
                f"the daemon at {self.socket_path} sent an unreadable load report: {_one_line(line, 200)}"
            ) from None
        if not isinstance(message, dict):
            return []
        if message.get("error") or message.get("errorDetail"):
            detail = message.get("errorDetail")
            text = detail.get("message") if isinstance(detail, dict) else None
            text = _one_line(str(text or message.get("error") or "unknown error"))
            raise DaemonError(f"the daemon at {self.socket_path} failed to load the image: {text}")
        found: list[str] = []
        for entry in str(message.get("stream") or "").splitlines():
            key, _, value = entry.strip().partition(": ")
            if key == "Loaded image ID":
                found.append(value.strip())
            elif key == "Loaded image":  # podman joins several names with ","
                found.extend(n.strip() for n in value.split(",") if n.strip())
            elif entry.strip():
                log.debug("load: %s", entry.strip())
        return found

    # -- plumbing ---------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        image: str | None = None,
        params: Mapping[str, str] | None = None,
        content: Iterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send one call (``/vX.Y``-prefixed except ping/version); raise for HTTP errors."""
        if path not in ("/_ping", "/version"):
            path = f"/v{self.api_version}{path}"
        request = self._http.build_request(
            method, path, params=params, content=content, headers=headers
        )
        try:
            response = self._http.send(request, stream=stream)
            if response.status_code < 400:
                return response
            try:
                response.read()
            finally:
                response.close()
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, what) from None
        message = _error_message(response)
        if response.status_code == 404 and image is not None and message != "page not found":
            raise ImageNotFound(f"image {image} not found in the daemon at {self.socket_path}")
        raise DaemonError(
            f"{what} failed: the daemon at {self.socket_path} answered HTTP {response.status_code}: {message}"
        )

    def _connect_error(self, exc: BaseException) -> DaemonError:
        code, path = _errno_of(exc), self.socket_path
        if code == errno.ENOENT:
            return DaemonError(
                f"no Docker/Podman daemon socket at {path} (is the daemon running? set DOCKER_HOST or ?socket=)"
            )
        if code == errno.ECONNREFUSED:
            return DaemonError(
                f"connection refused by the daemon socket {path} (is the daemon running?)"
            )
        if code in (errno.EACCES, errno.EPERM):
            return DaemonError(
                f"permission denied on the daemon socket {path} (run as root or as a member of the socket's group)"
            )
        return DaemonError(f"cannot connect to the daemon socket {path}: {_one_line(str(exc))}")

    def _transport_error(self, exc: httpx.HTTPError, what: str) -> DaemonError:
        if isinstance(exc, httpx.ConnectError):
            return self._connect_error(exc)
        if isinstance(exc, httpx.TimeoutException):
            return DaemonError(
                f"the daemon at {self.socket_path} did not answer in time during {what}"
            )
        detail = _one_line(str(exc)) or type(exc).__name__
        return DaemonError(
            f"{what} failed: lost the connection to the daemon at {self.socket_path}: {detail}"
        )

    def _json(self, response: httpx.Response, kind: type[Any]) -> Any:
        try:
            value = json.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            value = None
        if not isinstance(value, kind):
            raise DaemonError(
                f"the daemon at {self.socket_path} sent malformed JSON ({response.request.url.path})"
            )
        return value


def _error_message(response: httpx.Response) -> str:
    try:
        body = json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]:
        return _one_line(body["message"])
    text = response.content.decode("utf-8", "replace").strip()
    return _one_line(text) if text else response.reason_phrase or "no message"


def _quote(name: str) -> str:
    if not name or name != name.strip():
        raise InvalidOption(f"bad image name {name!r}")
    return quote(name, safe="/:@")
