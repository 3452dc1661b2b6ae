"""``occystrap check``: validate an image from any source against the OCI and Docker specs.

``run_check(uri, ctx, full=False) -> Report``; every result has a stable id and a fixed
severity (:data:`CHECKS`, documented in ``docs/check.md``).
"""

from __future__ import annotations

from .checks import run_check
from .report import CHECKS, MAX_LISTED, Report, Result, Severity

__all__ = ["CHECKS", "MAX_LISTED", "Report", "Result", "Severity", "run_check"]
