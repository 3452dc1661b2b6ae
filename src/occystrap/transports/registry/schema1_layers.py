"""The layers of a schema 1 image, fetched before the copy starts.

A schema 1 manifest names its layers without sizes and has no config; the diff_ids exist
nowhere but in the layers (:mod:`.schema1`). So each distinct layer is downloaded once into
a temporary file (``--temp-dir``, kept as long as the source is open), verified, and
decompressed to compute its diff_id; the copy then reads the layers from those files,
verified again as they are served. With no size in the manifest, a download is capped at
:data:`occystrap.bounds.MAX_UNSIZED_BLOB` bytes and the decompression at
:func:`occystrap.bounds.expansion_limit` of the stored size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, BinaryIO, cast

from ... import bounds
from ...blobio.compression import decompressing_reader, peek_compression
from ...blobio.readers import CHUNK, Reader
from ...blobio.spool import SpooledBlob, spool
from ...blobio.verify import VerifyingReader
from ...errors import LimitExceeded
from ...image import Layer
from ...model.config import ImageConfig
from ...model.descriptor import Descriptor
from ...model.digest import Digest, Hasher
from ...model.media_types import layer_media_type
from . import schema1
from .schema1 import Schema1

if TYPE_CHECKING:
    from .source import RegistryReader


def fetch_layers(source: RegistryReader, s1: Schema1) -> tuple[ImageConfig, tuple[Layer, ...]]:
    """The image's config (with the diff_ids) and its layers, served from temporary files."""
    unique = list(dict.fromkeys(s1.layers))
    jobs = max(1, min(source.ctx.jobs, len(unique)))
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="schema1") as pool:
        spooled = pool.map(lambda digest: _spool(source, digest), unique)
        fetched = dict(zip(unique, spooled, strict=True))
    diff_ids = [fetched[d][2] for d in s1.layers]
    config = schema1.config_with_diff_ids(s1, diff_ids)
    layers = []
    for i, digest in enumerate(s1.layers):
        blob, compression, diff_id = fetched[digest]
        desc = Descriptor(layer_media_type(compression, oci=False), digest, blob.size)
        layers.append(
            Layer(
                index=i,
                media_type=desc.media_type,
                descriptor=desc,
                diff_id=diff_id,
                opener=_spooled_opener(blob, desc, f"layer {i} ({digest})"),
                compression=compression,
                history=s1.history[i],
                origin=source.origin,
            )
        )
    source.ctx.reporter.notice(
        f"{source.ref}: converted a schema 1 manifest ({len(layers)} layers fetched to compute diff_ids)"
    )
    return config, tuple(layers)


def _spool(source: RegistryReader, digest: Digest) -> tuple[SpooledBlob, str, Digest]:
    """Download one schema 1 layer (verified) and compute its diff_id."""
    client, repo, ctx = source.client, source.repo, source.ctx
    what = f"layer {client.host}/{repo}@{digest}"
    with client.open_blob(repo, digest, None) as blob:
        capped = _Capped(blob, bounds.MAX_UNSIZED_BLOB, what)
        spooled = source.keep.enter_context(spool(capped, ctx.temp_dir))
    ctx.stats.add(bytes_read=spooled.size)
    with spooled.open() as f:
        compression, peeked = peek_compression(f)
        limit = bounds.expansion_limit(spooled.size)
        plain = decompressing_reader(peeked, compression, limit=limit, what=what)
        hasher = Hasher()
        while chunk := plain.read(CHUNK):
            hasher.update(chunk)
    return spooled, str(compression), hasher.digest()


class _Capped:
    """Reads ``src`` but refuses (LimitExceeded) to go past ``limit`` bytes."""

    def __init__(self, src: Reader, limit: int, what: str) -> None:
        self.src, self.limit, self.what, self.seen = src, limit, what, 0

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n if n >= 0 else CHUNK) or b""
        self.seen += len(data)
        if self.seen > self.limit:
            raise LimitExceeded(
                f"{self.what} is over the {self.limit}-byte limit for a blob of unknown size"
            )
        return data


def _spooled_opener(
    blob: SpooledBlob, desc: Descriptor, what: str
) -> Callable[[], AbstractContextManager[BinaryIO]]:
    @contextmanager
    def opened() -> Iterator[BinaryIO]:
        with blob.open() as f:
            yield cast(BinaryIO, VerifyingReader(f, desc, what))

    return opened
