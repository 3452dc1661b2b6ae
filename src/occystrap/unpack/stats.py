"""What applying one layer did: counts, and the first few warnings (``LayerStats``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

MAX_WARNINGS = 100


@dataclass(slots=True)
class LayerStats:
    """What one layer did; ``warnings`` keeps the first ``MAX_WARNINGS`` messages."""

    entries: int = 0
    files: int = 0
    directories: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    fifos: int = 0
    devices: int = 0
    whiteouts: int = 0
    opaque_whiteouts: int = 0
    bytes_written: int = 0
    duplicates: int = 0
    devices_skipped: int = 0
    chown_skipped: int = 0
    xattrs_skipped: int = 0
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        logger.warning("%s", message)
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
