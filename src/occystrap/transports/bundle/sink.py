"""``oci://PATH`` (alias ``bundle://PATH``): an OCI runtime bundle that ``runc run`` boots.

The bundle is exactly ``PATH/config.json`` and ``PATH/rootfs/``, nothing else (bundles
carry no manifest). It is built in ``.NAME.tmp-<random>/`` next to PATH (mode 0700, so no
other user can reach the half-built rootfs and its setuid files), in one pass:

* each layer is applied to ``rootfs/`` as its uncompressed tar streams in (``ordered``:
  index order), with the shared rules of :mod:`occystrap.unpack` (whiteouts, opaque
  directories, hardlinks, path safety); the stream is then read to its end so the
  engine's digest check of the diff_id completes;
* ``put_config`` writes ``config.json`` from :func:`build_runtime_config`, resolving
  ``User`` against the finished rootfs' /etc/passwd and /etc/group (an unknown user is
  an error);
* ``commit`` renames the work directory to PATH; ``abort`` removes it.

PATH policy: a missing PATH or an *empty* directory is fine (rename(2) replaces an empty
directory atomically); anything else is refused, checked in ``begin`` before any layer is
read and again by the rename itself. An existing bundle is never overwritten or merged into.
Missing parent directories are created. The bundle directory keeps mode 0700. A run that
is killed (no ``abort``) leaves its ``.NAME.tmp-*`` directory behind, never a bundle.

``?rootless=true`` writes the rootless spec (a user namespace mapping only the caller to
root) and unpacks without chown or device nodes, so every file belongs to the caller and
so to root inside the container. Only uid/gid 0 exist there, so an image whose ``User``
resolves to any other uid, gid or supplementary group is refused (InvalidOption) rather
than written as a bundle that cannot start.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import stat

from ...blobio.readers import drain
from ...errors import DigestMismatch, InvalidOption, OutputError
from ...image import Image
from ...model.config import ImageConfig
from ...model.descriptor import Descriptor
from ...model.digest import Digest
from ...model.manifest import Manifest
from ...model.media_types import MediaType
from ...tario.reader import iter_entries
from ...unpack import ROOTLESS, ApplyOptions, LayerStats, apply_layer, build_runtime_config
from ...unpack.whiteouts import remove_tree
from ..base import BlobStream, LayerForm, LayerWrite, RunContext, SinkCapabilities
from .options import BundleSinkOptions

log = logging.getLogger(__name__)

CONFIG = "config.json"
ROOTFS = "rootfs"


def open_sink(target: str, options: BundleSinkOptions, ctx: RunContext) -> BundleSink:
    return BundleSink(target, options, ctx)


class BundleSink:
    capabilities = SinkCapabilities(layer_form=LayerForm.UNCOMPRESSED, ordered=True)

    def __init__(self, path: str, options: BundleSinkOptions, ctx: RunContext) -> None:
        self.path = os.path.abspath(path)
        self.options = options
        self.ctx = ctx
        self.apply_options = ApplyOptions(ownership=ROOTLESS) if options.rootless else None
        self._work: str | None = None
        self._layers: list[LayerStats] = []
        self._configured = False
        self._reference = "image"

    # -- the Sink protocol --------------------------------------------------------------------

    def begin(self, image: Image) -> None:
        if self._work is not None:
            raise OutputError(f"oci://{self.path} holds one image; it was already begun")
        self._reference = image.reference
        _check_target(self.path)
        parent, name = os.path.split(self.path)
        work = os.path.join(parent, f".{name}.tmp-{secrets.token_hex(6)}")
        try:
            os.makedirs(parent, exist_ok=True)
            os.mkdir(work, 0o700)
        except OSError as e:
            raise OutputError(f"cannot create {work}: {e.strerror}") from None
        self._work = work
        try:
            os.chmod(work, 0o700)  # whatever the umask
            os.mkdir(os.path.join(work, ROOTFS), 0o755)
        except OSError as e:
            self.abort()  # the engine calls abort only once begin has succeeded
            raise OutputError(f"cannot create {work}/{ROOTFS}: {e.strerror}") from None

    def has_layer(self, digest: Digest) -> Descriptor | None:
        return None  # every layer must be applied, even one seen before

    def put_layer(self, blob: BlobStream, info: LayerWrite) -> Descriptor:
        rootfs = os.path.join(self._need_work(), ROOTFS)
        if len(self._layers) != info.index:
            raise OutputError(
                f"layer {info.index} arrived out of order (expected {len(self._layers)})"
            )
        what = f"layer {info.index}"
        stats = apply_layer(iter_entries(blob, what=what), rootfs, options=self.apply_options)
        drain(blob)  # the end-of-archive padding: the engine's digest needs every byte
        digest = blob.digest()
        if (
            info.digest is not None
            and info.digest.algorithm == digest.algorithm
            and info.digest != digest
        ):
            raise DigestMismatch(what, str(info.digest), str(digest))
        self._layers.append(stats)
        self.ctx.stats.add(bytes_written=stats.bytes_written)
        return Descriptor(info.media_type, digest, blob.size)

    def put_config(self, config: ImageConfig) -> Descriptor:
        work = self._need_work()
        spec = build_runtime_config(
            config.obj, os.path.join(work, ROOTFS), rootless=self.options.rootless
        )
        user = spec["process"]["user"]
        ids = {user["uid"], user["gid"], *user.get("additionalGids", ())}
        if self.options.rootless and ids != {0}:
            raise InvalidOption(
                f"?rootless=true maps only root, but the image runs as "
                f"{user['uid']}:{user['gid']} (groups {sorted(ids - {0})}); "
                "leave rootless off to run it"
            )
        target = os.path.join(work, CONFIG)
        data = json.dumps(spec, indent=2).encode() + b"\n"
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except OSError as e:
            raise OutputError(f"cannot write {target}: {e.strerror}") from None
        self._configured = True
        return Descriptor(MediaType.OCI_CONFIG, config.digest, config.size)

    def put_manifest(self, manifest: Manifest) -> None:
        """Bundles carry no manifest."""

    def commit(self) -> str:
        work = self._need_work()
        if not self._configured:
            raise OutputError(f"nothing to commit to {self.path}: no config was written")
        try:
            os.rename(work, self.path)
        except OSError as e:
            raise OutputError(f"cannot move the bundle to {self.path}: {_why(e)}") from None
        self._work = None
        skipped = sum(s.devices_skipped for s in self._layers)
        chowns = sum(s.chown_skipped for s in self._layers)
        if skipped or chowns:
            log.info("bundle %s: %d device nodes and %d chowns skipped", self.path, skipped, chowns)
        kind = "a rootless OCI runtime bundle" if self.options.rootless else "an OCI runtime bundle"
        n = len(self._layers)
        return f"wrote {self._reference} to {self.path} as {kind} ({n} layer{'s' * (n != 1)})"

    def abort(self) -> None:
        """Remove the work directory (the half-built rootfs and config)."""
        work, self._work = self._work, None
        if work is not None and os.path.lexists(work):
            try:
                remove_tree(work)
            except OSError as e:
                log.warning("cannot remove %s: %s", work, e.strerror)

    # -- helpers ------------------------------------------------------------------------------

    def _need_work(self) -> str:
        if self._work is None:
            raise OutputError(f"oci://{self.path} used before begin()")
        return self._work


def _check_target(path: str) -> None:
    """Refuse a PATH that exists and is anything but an empty directory."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise OutputError(f"cannot use {path} as a bundle: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{path} exists and is not a directory; refusing to replace it")
    try:
        empty = not os.listdir(path)
    except OSError as e:
        raise OutputError(f"cannot use {path} as a bundle: {e.strerror}") from None
    if not empty:
        raise OutputError(f"{path} exists and is not empty; refusing to overwrite it")


def _why(e: OSError) -> str:
    if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
        return "it appeared while the bundle was being built and is not an empty directory"
    return e.strerror or str(e)
