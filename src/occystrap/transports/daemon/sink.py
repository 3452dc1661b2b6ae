"""``docker://NAME[:TAG]`` as a destination: a docker-save archive streamed into ``/images/load``.

No archive is built on disk first. ``begin`` opens a pipe and starts a thread that feeds the
pipe's read end to :meth:`DaemonClient.load_image`; the layers, the config and
``manifest.json`` are then written into the pipe as the engine hands them over, in index
order (``<diffid>/layer.tar`` as the tar sink lays it out, each distinct layer once). A tar
header must precede its body, so a layer whose size is not known up front (it was
decompressed or rewritten on the way) is spooled to ``ctx.temp_dir`` first; an unchanged
uncompressed layer streams straight through.

``manifest.json`` names the image ``NAME:TAG`` as given (``busybox`` -> ``busybox:latest``).
After the load, the daemon must answer ``NAME:TAG`` with the config digest written; when it
stored the image under another name (podman adds ``localhost/`` to short names) the image
is tagged ``NAME:TAG`` as well. ``abort`` closes the pipe early: the thread then fails the
upload so the daemon sees a broken request and loads nothing.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from typing import Protocol

from ...blobio.readers import CHUNK
from ...blobio.spool import spool
from ...errors import DaemonError, OccystrapError, OutputError, SizeMismatch
from ...image import Image
from ...model.config import ImageConfig
from ...model.descriptor import Descriptor
from ...model.digest import Digest
from ...model.manifest import Manifest
from ...model.media_types import MediaType
from ..base import BlobStream, LayerForm, LayerWrite, RunContext, SinkCapabilities
from ..dockerarchive.manifest_json import (
    output_repo_tag,
    render_manifest_json,
    render_repositories,
    split_repo_tag,
)
from ..dockerarchive.tarheader import DIRTYPE, END_OF_ARCHIVE, header, member, padding
from .client import DaemonClient
from .options import DaemonSinkOptions

log = logging.getLogger(__name__)

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_HUB_PREFIXES = ("docker.io/", "index.docker.io/", "registry-1.docker.io/")


def open_sink(target: str, options: DaemonSinkOptions, ctx: RunContext) -> DaemonSink:
    """A sink loading into the daemon at ``?socket=`` (else ``$DOCKER_HOST``) as ``target``."""
    return DaemonSink(target, options, ctx)


def docker_normal(name: str) -> str:
    """``NAME:TAG`` as Docker spells it: ``docker.io/library/busybox:latest`` -> ``busybox:latest``."""
    for prefix in _HUB_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    else:
        return name
    if name.startswith("library/") and name.count("/") == 1:
        name = name[len("library/") :]
    return name


class _Abandoned(OccystrapError):
    """Raised inside the upload when the archive was given up before its end."""


class _Source(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class DaemonSink:
    capabilities = SinkCapabilities(
        layer_form=LayerForm.UNCOMPRESSED, ordered=True, thread_safe=False, default_family="docker"
    )

    def __init__(self, target: str, options: DaemonSinkOptions, ctx: RunContext) -> None:
        self.repo_tag = output_repo_tag(target)
        self.repo, tag = split_repo_tag(self.repo_tag)
        self.tag = tag or "latest"
        self._ctx = ctx
        self._client = DaemonClient(options.socket)
        self.where = f"the daemon at {self._client.socket_path}"
        self.api_version = self._client.api_version  # fail now when no daemon answers
        self._write_fd: int | None = None
        self._thread: threading.Thread | None = None
        self._finished = False  # the whole archive is in the pipe
        self._loaded: list[str] = []
        self._error: BaseException | None = None
        self._written: dict[str, Descriptor] = {}  # diff_id hex -> layer descriptor
        self._config: ImageConfig | None = None
        self._layers = 0

    # -- Sink --------------------------------------------------------------------------

    def begin(self, image: Image) -> None:
        read_fd, self._write_fd = os.pipe()
        try:
            fcntl.fcntl(self._write_fd, F_SETPIPE_SZ, CHUNK)
        except OSError:
            log.debug("could not grow the pipe to %d bytes", CHUNK)
        self._thread = threading.Thread(
            target=self._load, args=(read_fd,), name="daemon-load", daemon=True
        )
        self._thread.start()

    def has_layer(self, digest: Digest) -> Descriptor | None:
        return self._written.get(digest.encoded)

    def put_layer(self, blob: BlobStream, info: LayerWrite) -> Descriptor:
        size = _known_size(info)
        if size is None or info.diff_id is None:
            with spool(blob, self._ctx.temp_dir) as spooled:
                if spooled.digest.encoded in self._written:
                    return self._written[spooled.digest.encoded]
                with spooled.open() as f:
                    return self._write_layer(
                        f, spooled.digest, spooled.size, info.index, info.media_type
                    )
        return self._write_layer(blob, info.diff_id, size, info.index, info.media_type)

    def put_config(self, config: ImageConfig) -> Descriptor:
        self._config = config
        self._send(member(f"{config.digest.encoded}.json", config.raw))
        return Descriptor(MediaType.DOCKER_CONFIG, config.digest, config.size)

    def put_manifest(self, manifest: Manifest) -> None:
        if self._config is None:
            raise OutputError(f"{self.where}: the manifest came before the config")
        paths = []
        for layer in manifest.layers:
            if layer.digest.encoded not in self._written:
                raise OutputError(f"{self.where}: layer {layer.digest} was never written")
            paths.append(f"{layer.digest.encoded}/layer.tar")
        self._layers = len(paths)
        config_name = f"{self._config.digest.encoded}.json"
        tail = member("manifest.json", render_manifest_json(config_name, [self.repo_tag], paths))
        if paths:
            tail += member("repositories", render_repositories([self.repo_tag], paths[-1][:64]))
        self._send(tail + END_OF_ARCHIVE)
        self._finished = True
        self._close_pipe()

    def commit(self) -> str:
        if not self._finished or self._config is None:
            raise OutputError(f"{self.where}: commit before the whole image was written")
        try:
            self._join()
            if self._error is not None:
                raise self._error
            image_id = str(self._config.digest)
            if not any(docker_normal(n) == docker_normal(self.repo_tag) for n in self._loaded):
                log.debug("%s loaded %s; tagging %s", self.where, self._loaded, self.repo_tag)
                self._client.tag_image(image_id, self.repo, self.tag)
            found = self._client.inspect_image(self.repo_tag).get("Id")
            if found != image_id:
                raise DaemonError(
                    f"{self.where} has {self.repo_tag} as {found}, not the image just loaded ({image_id})"
                )
        finally:
            self._client.close()
        short = self._config.digest.short
        return f"loaded {self.repo_tag} into {self.where}: image {short}, {self._layers} layers"

    def abort(self) -> None:
        self._close_pipe()
        try:
            self._join()
        finally:
            self._client.close()

    # -- the pipe ----------------------------------------------------------------------

    def _load(self, read_fd: int) -> None:
        try:
            self._loaded = self._client.load_image(_PipeReader(read_fd, lambda: self._finished))
        except BaseException as e:  # reported by commit, or ends a blocked write
            self._error = e
        finally:
            os.close(read_fd)  # a writer still blocked in the pipe gets EPIPE

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _close_pipe(self) -> None:
        fd, self._write_fd = self._write_fd, None
        if fd is not None:
            os.close(fd)

    def _send(self, data: bytes | memoryview) -> None:
        if self._write_fd is None:
            raise OutputError(f"{self.where}: the image archive is already closed")
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._write_fd, view) :]
        except BrokenPipeError:
            raise self._upload_failure() from None
        except OSError as e:
            raise OutputError(f"cannot send the image to {self.where}: {e.strerror}") from None
        self._ctx.stats.add(bytes_written=len(data))

    def _upload_failure(self) -> OccystrapError:
        """Why the daemon stopped reading: the load thread's error, as one line."""
        self._close_pipe()
        self._join()
        if isinstance(self._error, OccystrapError):
            return self._error
        detail = f": {self._error}" if self._error else ""
        return DaemonError(f"{self.where} stopped reading the image{detail}")

    def _write_layer(
        self, body: _Source, diff_id: Digest, size: int, index: int, media_type: str
    ) -> Descriptor:
        held = self._written.get(diff_id.encoded)
        hexd = diff_id.encoded
        if held is None:
            self._send(header(f"{hexd}/", 0, DIRTYPE, 0o755) + header(f"{hexd}/layer.tar", size))
        sent = 0
        while data := body.read(CHUNK):
            sent += len(data)
            if sent > size:
                raise SizeMismatch(f"layer {index}", size, sent)
            if held is None:
                self._send(data)
        if sent != size:
            raise SizeMismatch(f"layer {index}", size, sent)
        if held is not None:
            return held
        self._send(padding(size))
        desc = Descriptor(media_type, diff_id, size)
        self._written[hexd] = desc
        return desc


class _PipeReader:
    """The pipe's read end for the upload; an early end of the archive fails the upload."""

    def __init__(self, fd: int, finished: Callable[[], bool]) -> None:
        self._fd = fd
        self._finished = finished

    def read(self, n: int = -1, /) -> bytes:
        data = os.read(self._fd, n if n > 0 else CHUNK)
        if not data and not self._finished():
            raise _Abandoned("the image archive was abandoned before its end")
        return data


def _known_size(info: LayerWrite) -> int | None:
    """The size of the plain bytes coming, when the source stores exactly them."""
    if info.size is not None:
        return info.size
    desc = info.source.descriptor
    if (
        desc is not None
        and info.digest is not None
        and info.source.compression == "none"
        and desc.digest == info.digest
    ):
        return desc.size
    return None
