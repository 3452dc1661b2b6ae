"""occystrap: a streaming pipeline for container images.

import occystrap
result = occystrap.process("tar://in.tar", "ocidir://out:v1", ["normalize-timestamps"])
print(result.manifest.digest)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .lazy import exports

if TYPE_CHECKING:  # imported on first use: `occystrap --version` should not load everything
    from .api import open_sink, open_source, process
    from .copy import CopyResult, copy_image
    from .errors import OccystrapError
    from .filters.catalog import parse_filter
    from .transports.base import RegistrySettings, RunContext

__version__ = "1.0.0.dev0"

# A library stays silent unless its host configures logging (no "last resort" stderr lines).
logging.getLogger(__name__).addHandler(logging.NullHandler())

_WHERE = {
    "CopyResult": "copy",
    "OccystrapError": "errors",
    "RegistrySettings": "transports.base",
    "RunContext": "transports.base",
    "copy_image": "copy",
    "open_sink": "api",
    "open_source": "api",
    "parse_filter": "filters.catalog",
    "process": "api",
}

__getattr__ = exports(__name__, _WHERE)


__all__ = [
    "CopyResult",
    "OccystrapError",
    "RegistrySettings",
    "RunContext",
    "__version__",
    "copy_image",
    "open_sink",
    "open_source",
    "parse_filter",
    "process",
]
