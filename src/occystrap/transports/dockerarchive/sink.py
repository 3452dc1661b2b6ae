"""``tar://PATH`` and ``tar://-`` as a destination: a docker-loadable archive.

Layout: ``<diffid>/`` + ``<diffid>/layer.tar`` per distinct layer (in layer order), then
``<config>.json``, ``manifest.json`` and ``repositories`` (when there are RepoTags), all
USTAR, root-owned, mtime 0, so the same image always gives the same bytes.

Layers may arrive out of order and from several threads. They are written strictly in
index order, whatever the arrival order: the layer whose turn it is streams straight into
the file (a placeholder header first, patched with the real name and size afterwards, so
nothing is spooled); a layer that arrives early is spooled to a temp file and written when
its turn comes. A layer whose diff_id was already written is not written again (a direct
write of one is rolled back by truncating). Output to stdout spools every layer, since a
header must precede its body. A file is written as ``PATH.tmp-<random>`` and renamed on
commit; abort removes it.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import sys
import threading
from typing import BinaryIO

from ...blobio.readers import CHUNK, read_chunk
from ...blobio.spool import SpooledBlob, spool
from ...errors import InvalidOption, OutputError
from ...image import Image
from ...model.config import ImageConfig
from ...model.descriptor import Descriptor
from ...model.digest import Digest
from ...model.manifest import Manifest
from ...model.media_types import MediaType
from ..base import BlobStream, LayerForm, LayerWrite, RunContext, SinkCapabilities
from .manifest_json import output_repo_tag, render_manifest_json, render_repositories
from .options import TarSinkOptions
from .tarheader import BLOCK, DIRTYPE, END_OF_ARCHIVE, header, member, padding

log = logging.getLogger(__name__)

_HUB_HOSTS = ("registry-1.docker.io/", "index.docker.io/")
# copy_file_range cannot copy between these files: fall back to read and write
_NO_COPY_RANGE = frozenset((errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF))


def open_sink(target: str, options: TarSinkOptions, ctx: RunContext) -> TarSink:
    return TarSink(target, options, ctx)


class TarSink:
    capabilities = SinkCapabilities(
        layer_form=LayerForm.UNCOMPRESSED,
        ordered=False,
        thread_safe=True,
        default_family="docker",
        writes_one_stream=True,
    )

    def __init__(self, target: str, options: TarSinkOptions, ctx: RunContext) -> None:
        self.target = target
        self.label = f"tar://{target}"
        self._ctx = ctx
        self._tags = [output_repo_tag(t) for t in options.tag]
        self._stdout = target == "-"
        self._path = os.path.expanduser(target)
        self._tmp_path: str | None = None
        self._out: BinaryIO | None = None
        self._lock = threading.Lock()
        self._next = 0  # the index whose turn it is
        self._writing = False  # some thread holds the writer role
        self._early: dict[int, SpooledBlob] = {}
        self._paths: dict[int, str] = {}  # index -> layer.tar member
        self._written: set[str] = set()  # diff_id hexes in the archive
        self._count = 0
        self._config: ImageConfig | None = None
        self._reference = "image"

    # -- Sink --------------------------------------------------------------------------

    def begin(self, image: Image) -> None:
        self._count = len(image.layers)
        self._reference = image.reference
        if not self._tags:
            self._tags = _source_tags(image)
        self._open()

    def has_layer(self, digest: Digest) -> Descriptor | None:
        return None  # every layer is read once, so the member order never depends on timing

    def put_layer(self, blob: BlobStream, info: LayerWrite) -> Descriptor:
        with self._lock:
            direct = info.index == self._next and not self._writing and not self._stdout
            if direct:
                self._writing = True
        if direct:
            try:
                digest, size = self._write_direct(blob, info.index)
            except BaseException:
                with self._lock:
                    self._writing = False
                raise
            with self._lock:
                self._next += 1
            self._drain()
            return Descriptor(info.media_type, digest, size)
        spooled = spool(blob, self._ctx.temp_dir)
        with self._lock:
            self._early[info.index] = spooled
            take = not self._writing and self._next in self._early
            if take:
                self._writing = True
        if take:
            self._drain()
        return Descriptor(info.media_type, spooled.digest, spooled.size)

    def put_config(self, config: ImageConfig) -> Descriptor:
        self._config = config
        with self._lock:
            if self._writing:
                raise OutputError(f"{self.label}: a layer is still being written")
            self._writing = True
            leftover = sorted(self._early)  # only if some index never arrived
        for index in leftover:
            self._write_spooled(index, self._early.pop(index))
        with self._lock:
            self._writing = False
        return Descriptor(MediaType.DOCKER_CONFIG, config.digest, config.size)

    def put_manifest(self, manifest: Manifest) -> None:
        if len(manifest.layers) != self._count:
            raise OutputError(
                f"{self.label}: the manifest has {len(manifest.layers)} layers, expected {self._count}"
            )

    def commit(self) -> str:
        if self._config is None or len(self._paths) != self._count:
            raise OutputError(
                f"{self.label}: commit before every layer and the config were written"
            )
        config_name = f"{self._config.digest.encoded}.json"
        layers = [self._paths[i] for i in range(self._count)]
        tail = member(config_name, self._config.raw)
        tail += member("manifest.json", render_manifest_json(config_name, self._tags, layers))
        if self._tags and layers:
            top = layers[-1].split("/", 1)[0]
            tail += member("repositories", render_repositories(self._tags, top))
        self._write(tail + END_OF_ARCHIVE)
        out = self._out
        assert out is not None
        try:
            out.flush()
            size = out.tell() if not self._stdout else None
            if self._tmp_path is not None:
                out.close()
                os.replace(self._tmp_path, self._path)
                self._tmp_path = None
        except OSError as e:
            raise OutputError(f"cannot write {self.label}: {e.strerror}") from None
        self._out = None
        what = ", ".join(self._tags) if self._tags else f"{self._reference} (untagged)"
        amount = f", {_human(size)}" if size is not None else ""
        return f"wrote tar {self.target}: {what}, {self._count} layers{amount}"

    def abort(self) -> None:
        for blob in self._early.values():
            blob.close()
        self._early.clear()
        out, self._out = self._out, None
        if out is not None and not self._stdout:
            out.close()
        if self._tmp_path is not None:
            try:
                os.unlink(self._tmp_path)
            except FileNotFoundError:
                pass
            self._tmp_path = None

    # -- writing -----------------------------------------------------------------------

    def _open(self) -> None:
        if self._stdout:
            if sys.stdout.isatty():
                raise OutputError(
                    "refusing to write a tar archive to a terminal (redirect tar://- to a file)"
                )
            self._out = sys.stdout.buffer
            return
        directory = os.path.dirname(os.path.abspath(self._path))
        tmp = os.path.join(directory, f"{os.path.basename(self._path)}.tmp-{secrets.token_hex(6)}")
        try:
            if os.path.isdir(self._path):
                raise IsADirectoryError(21, "Is a directory")
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise OutputError(f"cannot create {self.label}: {e.strerror}") from None
        self._tmp_path = tmp
        self._out = os.fdopen(fd, "w+b", buffering=CHUNK)

    def _write(self, data: bytes) -> None:
        assert self._out is not None
        try:
            self._out.write(data)
            self._ctx.stats.add(bytes_written=len(data))
        except OSError as e:
            raise OutputError(f"cannot write {self.label}: {e.strerror}") from None

    def _write_direct(self, blob: BlobStream, index: int) -> tuple[Digest, int]:
        """Stream the layer whose turn it is into the file; patch its headers afterwards."""
        out = self._out
        assert out is not None
        start = out.tell()
        self._write(bytes(2 * BLOCK))  # the dir and layer.tar headers, patched below
        size = 0
        try:
            while data := read_chunk(blob):
                self._write(data)
                size += len(data)
            digest = blob.digest()
            if digest.encoded in self._written:
                out.seek(start)
                out.truncate()
            else:
                self._write(padding(size))
                end = out.tell()
                out.seek(start)
                self._write(_layer_headers(digest.encoded, size))
                out.seek(end)
                self._written.add(digest.encoded)
        except OSError as e:
            self._roll_back(start)
            raise OutputError(f"cannot write {self.label}: {e.strerror}") from None
        except BaseException:
            self._roll_back(start)
            raise
        self._paths[index] = f"{digest.encoded}/layer.tar"
        return digest, size

    def _roll_back(self, start: int) -> None:
        assert self._out is not None
        try:
            self._out.seek(start)
            self._out.truncate()
        except OSError:
            log.debug("could not roll back a partial layer in %s", self.label)

    def _drain(self) -> None:
        """Holding the writer role: write early layers while it is their turn, then let go."""
        while True:
            with self._lock:
                blob = self._early.pop(self._next, None)
                if blob is None:
                    self._writing = False
                    return
                index = self._next
            try:
                self._write_spooled(index, blob)
            except BaseException:
                with self._lock:
                    self._writing = False
                raise
            with self._lock:
                self._next += 1

    def _write_spooled(self, index: int, blob: SpooledBlob) -> None:
        hexd = blob.digest.encoded
        try:
            if hexd not in self._written:
                self._write(_layer_headers(hexd, blob.size))
                with blob.open() as f:
                    copied = 0 if self._stdout else self._copy_in_kernel(f, blob.size)
                    f.seek(copied)
                    while data := f.read(CHUNK):
                        self._write(data)
                self._write(padding(blob.size))
                self._written.add(hexd)
        except OSError as e:
            raise OutputError(f"cannot write {self.label}: {e.strerror}") from None
        finally:
            blob.close()
        self._paths[index] = f"{hexd}/layer.tar"

    def _copy_in_kernel(self, f: BinaryIO, size: int) -> int:
        """Append ``size`` bytes of the spool ``f`` to the file with ``copy_file_range``
        (no trip through user space); return how many were copied (the rest, if the
        file system cannot do it, is copied the usual way)."""
        out = self._out
        assert out is not None
        out.flush()
        start = out.tell()
        done = 0
        try:
            while done < size:
                n = os.copy_file_range(f.fileno(), out.fileno(), size - done, done, start + done)
                if n <= 0:
                    break
                done += n
        except OSError as e:
            if e.errno not in _NO_COPY_RANGE:
                raise
        out.seek(start + done)
        self._ctx.stats.add(bytes_written=done)
        return done


def _layer_headers(hexd: str, size: int) -> bytes:
    return header(f"{hexd}/", 0, DIRTYPE, 0o755) + header(f"{hexd}/layer.tar", size)


def _source_tags(image: Image) -> list[str]:
    """The source's full name and tag as a RepoTag; none when either is unknown."""
    if image.name is None or not image.tag or ":" in image.tag:
        return []
    name = image.name
    for host in _HUB_HOSTS:
        if name.startswith(host):
            name = "docker.io/" + name[len(host) :]
    try:
        return [output_repo_tag(f"{name}:{image.tag}")]
    except InvalidOption:
        log.warning("not recording %s:%s as a RepoTag: not a valid reference", name, image.tag)
        return []


def _human(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
