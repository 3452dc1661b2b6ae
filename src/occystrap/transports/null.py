"""A sink that keeps nothing: reads every layer (so observers see it) and discards it."""

from __future__ import annotations

from ..image import Image
from ..model.config import ImageConfig
from ..model.descriptor import Descriptor
from ..model.digest import Digest
from ..model.manifest import Manifest
from .base import BlobStream, LayerForm, LayerWrite, SinkCapabilities

_CHUNK = 1 << 20


class NullSink:
    capabilities = SinkCapabilities(
        layer_form=LayerForm.STORED, thread_safe=True, compress_uncompressed=False
    )

    def begin(self, image: Image) -> None:
        self.reference = image.reference

    def has_layer(self, digest: Digest) -> Descriptor | None:
        return None

    def put_layer(self, blob: BlobStream, info: LayerWrite) -> Descriptor:
        while blob.read(_CHUNK):
            pass
        return Descriptor(info.media_type, blob.digest(), blob.size)

    def put_config(self, config: ImageConfig) -> Descriptor:
        return Descriptor("application/vnd.oci.image.config.v1+json", config.digest, config.size)

    def put_manifest(self, manifest: Manifest) -> None:
        pass

    def commit(self) -> str:
        return ""

    def abort(self) -> None:
        pass
