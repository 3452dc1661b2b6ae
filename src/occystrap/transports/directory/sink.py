"""``dir://PATH``: an image as a directory of uncompressed layer tarballs.

Layout (every layer and config file is named by its content)::

    PATH/<diff_id hex>/layer.tar      one per distinct layer, stored once
    PATH/<config hex>.json            the exact config bytes (sha256 of the file == its name)
    PATH/manifest.json                docker-save style [{"Config", "RepoTags", "Layers"}]
    PATH/catalog.json                 image -> tag -> manifest, config and layer files

``?unique_names=true`` makes PATH a store shared by many images: each image gets
``manifest-<name>-<tag>.json`` instead of ``manifest.json``. In both modes a layer already in
the store is not read again (``has_layer``), and a rewritten layer whose result turns out to be
stored already is dropped after writing. ``?expand=true`` also applies the layers in order to
``PATH/rootfs/`` (``PATH/rootfs-<name>-<tag>/`` with unique_names), whiteouts included.

A run works in ``PATH/.tmp-<random>/`` (:mod:`.workdir`). Layers and the config are renamed
to their content name as soon as they are complete and verified (harmless if the run fails
later: nothing refers to them); the rootfs, the manifest file and the catalog entry appear
only in ``commit``, under the store's lock, so a failed run leaves no complete-looking image.
What a killed run leaves behind (its work directory, a half-written catalog or manifest) is
removed by the next run: work directories of dead writers in ``begin``, the JSON temporaries
in ``commit`` under the lock.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from typing import Any, BinaryIO

from ...blobio.readers import read_chunk
from ...blobio.tee import observe_copy
from ...errors import DigestMismatch, OutputError
from ...image import Image
from ...model.config import ImageConfig
from ...model.descriptor import Descriptor
from ...model.digest import Digest
from ...model.manifest import Manifest
from ...model.media_types import MediaType
from ...tario.reader import iter_entries
from ...unpack.apply import apply_layer
from ..base import BlobStream, LayerForm, LayerWrite, RunContext, SinkCapabilities
from . import catalog
from .options import DirSinkOptions
from .workdir import WorkDir, sweep, sweep_json_temps

log = logging.getLogger(__name__)

UNNAMED = "unnamed"
DEFAULT_TAG = "latest"


def open_sink(target: str, options: DirSinkOptions, ctx: RunContext) -> DirectorySink:
    return DirectorySink(target, options, ctx)


def layer_file(digest: Digest) -> str:
    """The store-relative path of a layer: ``<hex>/layer.tar`` (``<alg>-<hex>`` if not sha256)."""
    base = (
        digest.encoded if digest.algorithm == "sha256" else f"{digest.algorithm}-{digest.encoded}"
    )
    return f"{base}/layer.tar"


class DirectorySink:
    def __init__(self, root: str, options: DirSinkOptions, ctx: RunContext) -> None:
        self.root = root
        self.options = options
        self.ctx = ctx
        # Expanding applies layers as they arrive, so they must arrive in order.
        self.capabilities = SinkCapabilities(
            layer_form=LayerForm.UNCOMPRESSED,
            ordered=options.expand,
            thread_safe=not options.expand,
            has_layer_is_query=not options.expand,  # expanding queues a held layer to apply
            keeps_layers=True,  # <hex>/layer.tar is in place as soon as put_layer returns
        )
        self._lock = threading.Lock()
        self._workdir: WorkDir | None = None
        self._work: str | None = None
        self._pending: list[str] = []  # stored layers to apply before the next one (expand)
        self._config: ImageConfig | None = None
        self._manifest: Manifest | None = None
        self._present: set[Digest] = set()  # layers found already stored
        self.name = UNNAMED
        self.tag = DEFAULT_TAG
        self.repo_tag: str | None = None

    # -- the Sink protocol --------------------------------------------------------------------

    def begin(self, image: Image) -> None:
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise OutputError(f"{self.root} exists and is not a directory")
        self.name = image.name or UNNAMED
        self.tag = image.tag or DEFAULT_TAG
        self.repo_tag = f"{image.name}:{self.tag}" if image.name else None
        workdir = WorkDir(self.root)
        self._workdir, self._work = workdir, workdir.path
        if self.options.expand:
            rootfs = os.path.join(workdir.path, "rootfs")
            try:
                os.mkdir(rootfs, 0o755)
            except OSError as e:
                self._cleanup()
                raise OutputError(f"cannot create {rootfs}: {e.strerror}") from None
        sweep(self.root, keep=workdir.path)

    def has_layer(self, digest: Digest) -> Descriptor | None:
        """The stored layer when ``<hex>/layer.tar`` exists (the engine then skips reading it).

        With ``expand`` the stored file is queued and applied before the next layer, which
        relies on ``ordered``: every layer is either answered here or put, in index order.
        """
        path = os.path.join(self.root, layer_file(digest))
        try:
            size = os.stat(path).st_size
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise OutputError(f"cannot read {path}: {e.strerror}") from None
        with self._lock:
            self._present.add(digest)
            if self.options.expand:
                self._pending.append(path)
        return Descriptor(MediaType.OCI_LAYER, digest, size)

    def put_layer(self, blob: BlobStream, info: LayerWrite) -> Descriptor:
        work = self._need_work()
        tmp = os.path.join(work, f"layer-{info.index}-{secrets.token_hex(4)}.tar")
        what = f"layer {info.index}"
        try:
            if self.options.expand:
                self._apply_pending()
                rootfs = os.path.join(work, "rootfs")

                def extract(stream: BinaryIO) -> None:
                    apply_layer(iter_entries(stream, what=what), rootfs)

                with observe_copy(extract) as tap:
                    self._copy_to(tap.wrap(blob), tmp, what)  # type: ignore[arg-type]
            else:
                self._copy_to(blob, tmp, what)
        except BaseException:
            _unlink(tmp)
            raise
        digest = blob.digest()
        if (
            info.digest is not None
            and info.digest.algorithm == digest.algorithm
            and info.digest != digest
        ):
            _unlink(tmp)
            raise DigestMismatch(what, str(info.digest), str(digest))
        final = os.path.join(self.root, layer_file(digest))
        try:
            if os.path.exists(final):
                os.unlink(tmp)  # e.g. a filtered layer that came out identical to a stored one
                with self._lock:
                    self._present.add(digest)
            else:
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.replace(tmp, final)
        except OSError as e:
            _unlink(tmp)
            raise OutputError(f"cannot store {what} as {final}: {e.strerror}") from None
        self.ctx.stats.add(bytes_written=blob.size)
        return Descriptor(info.media_type, digest, blob.size)

    def put_config(self, config: ImageConfig) -> Descriptor:
        if self.options.expand:
            self._apply_pending()
        final = os.path.join(self.root, f"{config.digest.encoded}.json")
        if not os.path.exists(final):
            tmp = os.path.join(self._need_work(), f"config-{secrets.token_hex(4)}.json")
            try:
                with open(tmp, "xb") as f:
                    f.write(config.raw)
                os.replace(tmp, final)
            except OSError as e:
                _unlink(tmp)
                raise OutputError(f"cannot write {final}: {e.strerror}") from None
        self._config = config
        return Descriptor(MediaType.OCI_CONFIG, config.digest, config.size)

    def put_manifest(self, manifest: Manifest) -> None:
        self._manifest = manifest

    def commit(self) -> str:
        manifest, config, work = self._manifest, self._config, self._work
        if manifest is None or config is None or work is None:
            raise OutputError(f"nothing to commit to {self.root}")
        layers = [layer_file(d.digest) for d in manifest.layers]
        for rel in layers:
            if not os.path.isfile(os.path.join(self.root, rel)):
                raise OutputError(f"layer file {rel} vanished from {self.root} before commit")
        config_file = f"{config.digest.encoded}.json"
        unique = self.options.unique_names
        suffix = f"-{catalog.sanitise(self.name)}-{catalog.sanitise(self.tag)}"
        manifest_file = f"manifest{suffix}.json" if unique else "manifest.json"
        entry: dict[str, Any] = {
            "Config": config_file,
            "RepoTags": [self.repo_tag] if self.repo_tag else [],
            "Layers": layers,
        }
        rootfs = f"rootfs{suffix}" if unique else "rootfs"
        with catalog.store_lock(self.root):
            sweep_json_temps(self.root)
            if self.options.expand:
                self._install_rootfs(os.path.join(work, "rootfs"), os.path.join(self.root, rootfs))
            catalog.write_json(os.path.join(self.root, manifest_file), [entry])
            record: dict[str, Any] = {
                "manifest": manifest_file,
                "config": config_file,
                "layers": layers,
            }
            if self.options.expand:
                record["rootfs"] = rootfs
            catalog.record(self.root, self.name, self.tag, record)
        self._cleanup()
        where = f"{self.root}/{rootfs}" if self.options.expand else self.root
        return (
            f"wrote {self.name}:{self.tag} to {where} ({len(layers)} layers, "
            f"{len(self._present)} already stored)"
        )

    def abort(self) -> None:
        """Remove the run's work directory (temporary layers, the half-built rootfs)."""
        self._cleanup()

    # -- helpers ------------------------------------------------------------------------------

    def _need_work(self) -> str:
        if self._work is None:
            raise OutputError("dir:// sink used before begin()")
        return self._work

    def _copy_to(self, reader: BlobStream, path: str, what: str) -> None:
        try:
            with open(path, "xb") as f:
                while chunk := read_chunk(reader):
                    f.write(chunk)
        except OSError as e:
            raise OutputError(f"cannot write {what} to {path}: {e.strerror}") from None

    def _apply_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        rootfs = os.path.join(self._need_work(), "rootfs")
        for path in pending:
            try:
                f = open(path, "rb")
            except OSError as e:
                raise OutputError(f"cannot read stored layer {path}: {e.strerror}") from None
            with f:
                apply_layer(iter_entries(f, what=path), rootfs)

    def _install_rootfs(self, built: str, final: str) -> None:
        """Rename the built rootfs into place, replacing an older one (caller holds the lock)."""
        old = None
        try:
            if os.path.lexists(final):
                old = os.path.join(self._need_work(), "old-rootfs")
                os.rename(final, old)
            os.rename(built, final)
        except OSError as e:
            raise OutputError(f"cannot move the rootfs to {final}: {e.strerror}") from None

    def _cleanup(self) -> None:
        workdir, self._workdir, self._work = self._workdir, None, None
        if workdir is not None:
            workdir.close()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
