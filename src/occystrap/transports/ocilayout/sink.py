"""``ocidir://PATH[:REF]`` as a destination: blobs as stored, ``index.json`` written last.

Every blob is written to ``blobs/<alg>/.tmp-*``, checked, and renamed to its digest name; a
blob already there is kept (content addressed), which is also how ``has_layer`` answers.
Config and manifest are stored as their exact bytes. ``commit`` adds the manifest to
``index.json`` under an exclusive lock with read-modify-write, written to a temporary file
and renamed, so several processes writing different images into one layout all end up in it.
An entry with the same ref name is replaced; without a ref name the entry is added once per
manifest digest.

It can hold an index (``holds_index``, ``--all-platforms``): the images' manifests and
``put_index``'s indexes (exact bytes, so their digests are kept) are stored as blobs only, and
``commit`` records the last thing put, the top index, in ``index.json``; the images it lists
are reached through it and get no ``index.json`` entry of their own.

``abort`` removes the temporary files this sink created. Blobs that were completely written
and verified stay: they are content addressed and unreferenced blobs are allowed by the
image-layout spec, so they are harmless (and make a retry cheaper). ``index.json`` is never
touched by an aborted run. But when this run created the layout directory, nothing was
committed and no other writer is at work in it, ``abort`` removes the layout it made.

Temporary files are locked while written, so what killed writers left is swept: ``begin``
removes stale ``blobs/*/.tmp-*`` and ``commit`` the root's ``.tmp-*`` (:mod:`.tidy`).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from typing import Any

from ...blobio.readers import read_chunk
from ...errors import DigestMismatch, InvalidOption, OccystrapError, OutputError, SizeMismatch
from ...image import Image
from ...model.config import ImageConfig
from ...model.descriptor import Descriptor, Platform
from ...model.digest import Digest, Hasher
from ...model.jsonfile import dump_canonical
from ...model.manifest import Index, Manifest
from ...model.media_types import MediaType
from ..base import BlobStream, LayerForm, LayerWrite, RunContext, SinkCapabilities
from . import tidy
from .layout import (
    INDEX_FILE,
    LAYOUT_FILE,
    LAYOUT_VERSION,
    LOCK_FILE,
    REF_NAME,
    blob_path,
    check_layout_file,
    check_ref_name,
    exclusive_lock,
    is_layout,
    load_index_json,
    split_target,
    with_entry,
)
from .options import OciDirSinkOptions

log = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def open_sink(target: str, options: OciDirSinkOptions, ctx: RunContext) -> OciLayoutSink:
    path, ref = split_target(target)
    if options.ref is not None and ref is not None and options.ref != ref:
        raise InvalidOption(
            f"ref given twice and differently: {ref!r} in the path, {options.ref!r} in ?ref="
        )
    ref = ref or options.ref
    return OciLayoutSink(path, check_ref_name(ref) if ref else None, ctx)


class OciLayoutSink:
    capabilities = SinkCapabilities(
        layer_form=LayerForm.STORED,
        thread_safe=True,
        default_family="oci",
        holds_index=True,
        adopts_local_copies=True,
        keeps_layers=True,  # a blob is in blobs/ as soon as put_layer returns
    )

    def __init__(self, root: str, ref: str | None, ctx: RunContext) -> None:
        self.root = root
        self.ref = ref
        self.ctx = ctx
        self._lock = threading.Lock()
        self._temps: set[str] = set()
        self._config: ImageConfig | None = None
        self._last: Manifest | Index | None = None  # what commit names in index.json
        self._done = False
        self._created = False  # this run made the layout directory
        self._held: int | None = None  # tidy.hold() of the layout directory

    # -- the Sink protocol --------------------------------------------------------------------

    def begin(self, image: Image) -> None:
        """Create the layout (``oci-layout``, ``blobs/sha256``) if it does not exist yet.

        Creation happens under the layout lock, so writers starting at once on a new
        directory neither trip over each other nor see a half-made layout.
        """
        root = self.root
        if os.path.exists(root) and not os.path.isdir(root):
            raise OutputError(f"{root} exists and is not a directory")
        self._refuse_foreign()  # before creating anything in someone else's directory
        for _ in range(5):
            existed = os.path.isdir(root)
            self._makedirs(root)
            self._held = tidy.hold(root)
            if self._held is not None:
                break
        else:
            raise OutputError(f"cannot create {root}: it keeps being removed")
        self._created = not existed
        with exclusive_lock(root):
            if is_layout(root):
                check_layout_file(root)
            else:
                self._refuse_foreign()
                self._makedirs(os.path.join(root, "blobs", "sha256"))
                marker = dump_canonical({"imageLayoutVersion": LAYOUT_VERSION})
                self._write_file(os.path.join(root, LAYOUT_FILE), marker)
        self._makedirs(os.path.join(root, "blobs", "sha256"))
        tidy.sweep_blob_temps(root)

    def _refuse_foreign(self) -> None:
        """Refuse a non-empty directory that is not (and is not becoming) an OCI layout."""
        root = self.root
        if not os.path.isdir(root) or is_layout(root):
            return
        # oci-layout may appear between the two looks: another writer made the layout
        ours = {"blobs", LOCK_FILE, LAYOUT_FILE}
        if any(n not in ours and not n.startswith(".tmp-") for n in os.listdir(root)):
            raise OutputError(f"{root} is a non-empty directory but not an OCI image layout")

    def has_layer(self, digest: Digest) -> Descriptor | None:
        """The stored blob's descriptor when ``blobs/<alg>/<hex>`` exists.

        Only the digest is asked, so the media type is sniffed from the blob's first bytes
        (OCI family); a copy that keeps the source manifest does not use it.
        """
        path = blob_path(self.root, digest)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                head = f.read(4)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise OutputError(f"cannot read {path}: {e.strerror}") from None
        if head.startswith(_GZIP_MAGIC):
            media_type = MediaType.OCI_LAYER_GZIP
        elif head.startswith(_ZSTD_MAGIC):
            media_type = MediaType.OCI_LAYER_ZSTD
        else:
            media_type = MediaType.OCI_LAYER
        return Descriptor(media_type, digest, size)

    def put_layer(self, blob: BlobStream, info: LayerWrite) -> Descriptor:
        algorithm = info.digest.algorithm if info.digest else "sha256"
        digest, size = self._store_stream(blob, algorithm, f"layer {info.index}")
        if info.digest is not None and digest != info.digest:
            raise DigestMismatch(f"layer {info.index}", str(info.digest), str(digest))
        if info.size is not None and size != info.size:
            raise SizeMismatch(f"layer {info.index}", info.size, size)
        return Descriptor(info.media_type, digest, size)

    def adopt_layer(self, path: str, info: LayerWrite) -> Descriptor | None:
        """Hard-link ``path`` (see :class:`~..base.AdoptingSink`) as the blob: the bytes are
        written once, by the source's download, not a second time here."""
        digest, size = info.digest, info.size
        if digest is None or size is None:
            return None
        final = blob_path(self.root, digest)
        directory = os.path.dirname(final)
        self._makedirs(directory)
        tmp = self._temp_path(directory)
        try:
            os.link(path, tmp)
        except OSError as e:
            self._forget(tmp)
            log.debug("cannot link %s into %s (%s); writing it", path, directory, e.strerror)
            return None
        try:
            linked = os.stat(tmp).st_size
            if linked != size:
                raise SizeMismatch(f"layer {info.index} (local copy {path})", size, linked)
        except BaseException:
            self._discard(tmp)
            raise
        self._settle(tmp, final, f"layer {info.index}")
        log.debug("layer %d: linked the verified copy %s", info.index, path)
        self.ctx.stats.add(bytes_written=size)
        return Descriptor(info.media_type, digest, size)

    def put_config(self, config: ImageConfig) -> Descriptor:
        self._config = config
        self._store_bytes(config.raw, config.digest)
        return Descriptor(MediaType.OCI_CONFIG, config.digest, config.size)

    def put_manifest(self, manifest: Manifest) -> None:
        self._store_bytes(manifest.raw, manifest.digest)
        self._last = manifest

    def put_index(self, index: Index) -> None:
        """Store the index's exact bytes; every manifest it lists was put before."""
        self._store_bytes(index.raw, index.digest)
        self._last = index

    def commit(self) -> str:
        last = self._last
        if last is None or self._done:
            raise OutputError(f"nothing to commit to {self.root}")
        entry = last.descriptor().to_json()
        platform = _platform(self._config) if isinstance(last, Manifest) else None
        if platform is not None:
            entry["platform"] = platform.to_json()
        if self.ref:
            entry["annotations"] = {REF_NAME: self.ref}
        with exclusive_lock(self.root):
            tidy.remove_root_temps(self.root)  # only ever written under this lock
            self._update_index(entry, str(last.digest))
        self._done = True
        self._release()
        what = f"{self.ref}" if self.ref else "an unnamed image"
        shown = str(last.digest)
        if isinstance(last, Index):
            shown += f", index of {len(last.manifests)} manifests"
        return f"wrote {what} ({shown}) to OCI layout {self.root}"

    def abort(self) -> None:
        with self._lock:
            temps, self._temps = list(self._temps), set()
        for path in temps:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("cannot remove %s: %s", path, e.strerror)
        if self._created and not self._done and self._held is not None:
            if tidy.remove_layout(self.root, self._held):
                log.info("removed the uncommitted layout %s this run created", self.root)
        self._done = True
        self._release()

    def _release(self) -> None:
        if self._held is not None:
            os.close(self._held)  # releases the shared lock on the layout directory
            self._held = None

    # -- files --------------------------------------------------------------------------------

    def _update_index(self, entry: dict[str, Any], digest: str) -> None:
        """Read-modify-write ``index.json``; the caller holds the layout lock."""
        path = os.path.join(self.root, INDEX_FILE)
        doc: dict[str, Any]
        if os.path.exists(path):
            try:
                _, doc = load_index_json(self.root)
            except OccystrapError as e:  # never clobber an index we cannot read
                raise OutputError(f"cannot update {path}: {e}") from None
        else:
            doc = {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": []}
        doc = with_entry(doc, entry, self.ref, digest)
        self._write_file(path, dump_canonical(doc))

    def _temp_path(self, directory: str) -> str:
        path = os.path.join(directory, f".tmp-{secrets.token_hex(8)}")
        with self._lock:
            self._temps.add(path)
        return path

    def _forget(self, path: str) -> None:
        with self._lock:
            self._temps.discard(path)

    def _write_file(self, final: str, data: bytes) -> None:
        """Write ``data`` to a temporary name beside ``final``, then rename it into place."""
        tmp = self._temp_path(os.path.dirname(final) or ".")
        try:
            with open(tmp, "xb") as f:
                tidy.lock_temp(f.fileno())  # held until renamed: not a killed run's leftover
                f.write(data)
                f.flush()
                os.replace(tmp, final)
        except OSError as e:
            self._discard(tmp)
            raise OutputError(f"cannot write {final}: {e.strerror}") from None
        self._forget(tmp)

    def _store_bytes(self, data: bytes, digest: Digest) -> None:
        final = blob_path(self.root, digest)
        if not os.path.exists(final):
            self._makedirs(os.path.dirname(final))
            self._write_file(final, data)

    def _store_stream(self, blob: BlobStream, algorithm: str, what: str) -> tuple[Digest, int]:
        """Copy ``blob`` to a temporary blob file, then rename it to its digest name."""
        directory = os.path.join(self.root, "blobs", algorithm)
        self._makedirs(directory)
        tmp = self._temp_path(directory)
        own = Hasher(algorithm) if algorithm != "sha256" else None
        try:
            f = open(tmp, "xb")
        except OSError as e:
            self._discard(tmp)
            raise OutputError(f"cannot write {what} to {tmp}: {e.strerror}") from None
        with f:
            tidy.lock_temp(f.fileno())  # held until renamed or removed
            try:
                while chunk := read_chunk(blob):
                    if own is not None:
                        own.update(chunk)
                    f.write(chunk)
                f.flush()
            except OSError as e:
                self._discard(tmp)
                raise OutputError(f"cannot write {what} to {tmp}: {e.strerror}") from None
            except BaseException:
                self._discard(tmp)
                raise
            digest = own.digest() if own is not None else blob.digest()
            size = own.size if own is not None else blob.size
            self._settle(tmp, blob_path(self.root, digest), what)
        self.ctx.stats.add(bytes_written=size)
        return digest, size

    def _settle(self, tmp: str, final: str, what: str) -> None:
        """Rename the complete, checked temporary blob ``tmp`` to its digest name ``final``,
        or drop it when that blob is stored already (same content)."""
        try:
            if os.path.exists(final):
                self._discard(tmp)
            else:
                os.replace(tmp, final)
                self._forget(tmp)
        except OSError as e:
            self._discard(tmp)
            raise OutputError(f"cannot store {what} as {final}: {e.strerror}") from None

    def _discard(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self._forget(path)

    @staticmethod
    def _makedirs(path: str) -> None:
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create {path}: {e.strerror}") from None


def _platform(config: ImageConfig | None) -> Platform | None:
    """The index entry's platform, when the config names one."""
    if config is None:
        return None
    try:
        obj = config.obj
    except Exception:  # an artifact's opaque config
        return None
    if isinstance(obj.get("os"), str) and isinstance(obj.get("architecture"), str):
        return config.platform
    return None
