"""tar://: docker-save archives (``docker load`` / ``podman load`` format), read and written.

For other transports that read a docker-save stream (the daemon source):
:class:`ArchiveStream` reads any binary stream in one pass, :class:`Expect` passes what is
known beforehand (config digest, diff_ids), and :func:`image_from_plan` turns the plan into
an :class:`~occystrap.image.Image` whose layers open through the stream.
"""

from .expect import Expect
from .reader import LayerRef, Plan, image_from_plan
from .stream import ArchiveStream

__all__ = ["ArchiveStream", "Expect", "LayerRef", "Plan", "image_from_plan"]
