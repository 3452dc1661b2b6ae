"""``run_check``: validate the image behind a source URI and return a :class:`Report`.

Metadata mode reads only manifests, indexes and the config (and, for layouts and archives,
the sizes of the stored layer blobs). Full mode also streams every layer once: stored size
and digest, compression magic against the media type, diff_id, and each tar member header.
Which reader serves which scheme is described in :mod:`.sources`; the ids and severities of
the results are in :data:`.report.CHECKS` and ``docs/check.md``.
"""

from __future__ import annotations

import logging

from .. import transports
from ..transports.base import RunContext
from ..transports.ocilayout.layout import split_source_target
from .opened import check_opened
from .report import Report
from .sources import check_archive, check_ocidir

log = logging.getLogger(__name__)


def run_check(uri: str, ctx: RunContext | None = None, *, full: bool = False) -> Report:
    """Check the image ``uri`` names. Raises the usual typed errors when there is no image
    to check at all (unknown scheme, missing file, unreadable index.json/manifest.json)."""
    ctx = ctx or RunContext()
    endpoint = transports.parse(uri, "source")
    report = Report(reference=uri, mode="full" if full else "metadata")
    scheme = endpoint.transport.scheme
    if scheme == "ocidir":
        root, ref = split_source_target(endpoint.target)
        check_ocidir(root, ref, endpoint.options, ctx, report, full)
    elif (
        scheme == "tar"
        and endpoint.target != "-"
        and check_archive(endpoint.target, endpoint.options, report, full)
    ):
        pass
    else:
        log.debug("checking %s through its transport", uri)
        check_opened(uri, ctx, report, full)
    return report.finish()
