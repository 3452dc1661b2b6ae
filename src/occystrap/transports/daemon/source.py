"""``docker://NAME[:TAG]`` as a source: one image exported by a Docker or Podman daemon.

The image is inspected first: its ``Id`` is the config digest and ``RootFS.Layers`` its
diff_ids. Then ``GET /images/{name}/get`` is read once, front to back, by the tar
transport's :class:`~..dockerarchive.stream.ArchiveStream`, which is told those digests
(:class:`~..dockerarchive.expect.Expect`): the image is ready as soon as the config member
has passed (its bytes are checked against ``Id``), and each layer is recognised by name
(``<diffid>.tar``, ``blobs/sha256/<diffid>``) or by content, then checked against its
diff_id. Layers that pass by before their turn are spooled under ``ctx.temp_dir``; the one
whose turn it is streams straight through. Every layout the daemons write is read this way:
dockerd's lexical ``<v1id>/layer.tar`` + ``<config>.json``, podman's ``<diffid>.tar`` files
with symlinked legacy directories and ``manifest.json`` last, and Docker 25+ OCI layouts.
When ``Id`` is not a config digest (containerd's image store names the index or manifest)
or another platform was exported, the archive's own ``manifest.json`` decides instead.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

from ...blobio.compression import Compression, detect
from ...errors import DaemonError, InvalidReference, MalformedInput
from ...image import Image
from ...model.descriptor import Descriptor, Platform
from ...model.digest import Digest
from ...model.media_types import INDEX_TYPES, MANIFEST_TYPES
from ..base import RunContext
from ..dockerarchive.expect import Expect
from ..dockerarchive.layout import blob_path
from ..dockerarchive.manifest_json import split_repo_tag
from ..dockerarchive.reader import Plan, image_from_plan
from ..dockerarchive.stream import ArchiveStream
from .client import PLATFORM_API_VERSION, DaemonClient
from .options import DaemonSourceOptions

log = logging.getLogger(__name__)

_IMAGE_ID = re.compile(r"^(sha256:)?[0-9a-f]{12,64}$")
_NOT_CONFIG = (*MANIFEST_TYPES, *INDEX_TYPES)


def parse_target(target: str) -> tuple[str, str | None, str | None]:
    """``NAME[:TAG]``, ``NAME@DIGEST`` or an image ID -> (what to ask for, name, tag).

    ``busybox`` asks for ``busybox:latest``; the name keeps whatever registry and namespace
    the user wrote. An image ID has no name or tag of its own (None, None).
    """
    text = target.strip()
    if not text or text != target or any(c.isspace() for c in text):
        raise InvalidReference(
            f"bad image name {target!r}; expected NAME[:TAG], e.g. busybox:latest"
        )
    if _IMAGE_ID.match(text):
        return text, None, None
    name, at, digest = text.partition("@")
    repo, tag = split_repo_tag(name)
    if not repo or repo.endswith(("/", ":")):
        raise InvalidReference(f"bad image name {target!r}; expected NAME[:TAG]")
    if at:
        return text, repo, tag
    tag = tag or "latest"
    return f"{repo}:{tag}", repo, tag


@contextmanager
def open_source(target: str, options: DaemonSourceOptions, ctx: RunContext) -> Iterator[Image]:
    """The image ``target`` of the daemon at ``?socket=`` (else ``$DOCKER_HOST``)."""
    ref, name, tag = parse_target(target)
    label = f"docker://{target}"
    platform = Platform.parse(options.platform) if options.platform else ctx.platform
    with DaemonClient(options.socket) as client:
        info = client.inspect_image(ref)
        if name is None:
            name, tag = _first_repo_tag(info)
        expect = _expect(info, client.socket_path, name, tag)
        if platform is not None and client.supports(PLATFORM_API_VERSION):
            expect = None  # the inspected image may be another platform's
        reader = client.export_image(ref, platform)
        what = f"{label} (export from the daemon at {client.socket_path})"
        with (
            closing(reader),
            ArchiveStream(reader, what=what, temp_dir=ctx.temp_dir, stats=ctx.stats) as archive,
        ):
            plan = _plan(archive, expect)
            plan.name, plan.tag = name, tag
            _learn_sizes(plan, archive)
            yield image_from_plan(plan, archive.opener, label, sequential=True)
            archive.finish()


def _expect(info: dict[str, Any], socket: str, name: str | None, tag: str | None) -> Expect | None:
    """What inspect promises about the export; None when ``Id`` is not a config digest."""
    where = f"the daemon at {socket}"
    try:
        image_id = Digest.parse(str(info.get("Id")))
        layers = (info.get("RootFS") or {}).get("Layers") or []
        diff_ids = tuple(Digest.parse(d) for d in layers)
    except (InvalidReference, AttributeError, TypeError):
        raise DaemonError(f"{where} described the image with a malformed Id or RootFS") from None
    descriptor = info.get("Descriptor")
    if isinstance(descriptor, dict) and descriptor.get("mediaType") in _NOT_CONFIG:
        log.debug("%s names images by %s; reading manifest.json", where, descriptor["mediaType"])
        return None
    return Expect(image_id, diff_ids, name, tag)


def _plan(archive: ArchiveStream, expect: Expect | None) -> Plan:
    """The plan from inspect's digests, else from the archive's manifest.json.

    Without a config named by ``Id`` (containerd's store names the index or manifest, and
    that blob is then in the archive), manifest.json decides, and its config must still
    have the diff_ids inspect reported.
    """
    if expect is None:
        return archive.plan()
    try:
        return archive.plan_expected(expect)
    except MalformedInput as e:
        log.info("%s: %s; reading manifest.json instead", archive.what, e)
    plan = archive.plan()
    if plan.config.digest != expect.config:
        if archive.resolve(blob_path(expect.config), "image") is None:
            raise MalformedInput(f"{archive.what} does not hold the config {expect.config}")
        if expect.diff_ids and tuple(expect.diff_ids) != plan.config.diff_ids:
            raise MalformedInput(f"{archive.what} holds another image than the daemon described")
    return plan


def _learn_sizes(plan: Plan, archive: ArchiveStream) -> None:
    """Sizes of plain layers already held (podman sends them before the config), so a
    destination that must write a tar header before the body need not spool them again."""
    for ref in plan.layers:
        if ref.descriptor is not None or ref.compression != "none" or ref.diff_id is None:
            continue
        for path in ref.paths:
            member = archive.resolve(path, f"layer {ref.index}")
            head = archive.head(member) if member is not None else None
            if member is None or head is None or detect(head) is not Compression.NONE:
                continue
            if archive.digest(member) == ref.diff_id:
                ref.size = member.size
                ref.descriptor = Descriptor(ref.media_type, ref.diff_id, member.size)
                break


def _first_repo_tag(info: dict[str, Any]) -> tuple[str | None, str | None]:
    tags = [t for t in info.get("RepoTags") or [] if isinstance(t, str) and t != "<none>:<none>"]
    if not tags:
        return None, None
    repo, tag = split_repo_tag(tags[0])
    return repo, tag
