"""Broken inputs for the command-line tests: a missing file or layout, malformed JSON, a
truncated tarball, and layer bytes that do not match their digest (in a layout and a tarball).
"""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

from lab.archive import open_archive
from lab.ocilayout import LayoutInfo


def _rewrite(src: Path, dst: Path, change: Callable[[str, bytes], bytes | None]) -> Path:
    """Copy a tarball, letting ``change(name, data)`` replace (or drop: None) each member."""
    with tarfile.open(src) as tin, open_archive(dst) as ar:
        for member in tin:
            if member.isdir():
                ar.dir(member.name)
                continue
            f = tin.extractfile(member)
            assert f is not None
            data = change(member.name, f.read())
            if data is not None:
                ar.data(member.name, data)
    return dst


def bad_inputs(work: Path, archive: Path, layout: LayoutInfo) -> dict[str, str]:
    """name -> source URI of a broken input (``BAD_INPUTS``), built from a good archive and
    layout of the same image."""
    cases = {
        "missing-file": f"tar://{work / 'missing.tar'}",
        "missing-layout": f"ocidir://{work / 'none'}",
    }
    bad_json = _rewrite(
        archive, work / "bad-json.tar", lambda n, d: b"[{" if n == "manifest.json" else d
    )
    cases["malformed-manifest-json"] = f"tar://{bad_json}"
    broken_index = shutil.copytree(layout.path, work / "bad-index")
    (broken_index / "index.json").write_text('{"schemaVersion": 2, "manifests": [')
    cases["malformed-index-json"] = f"ocidir://{broken_index}"
    data = archive.read_bytes()
    truncated = work / "truncated.tar"
    truncated.write_bytes(data[: len(data) // 2])
    cases["truncated-tar"] = f"tar://{truncated}"
    flipped = shutil.copytree(layout.path, work / "flipped")
    blob = flipped / "blobs" / "sha256" / layout.layer_digests[0][7:]
    raw = bytearray(blob.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    blob.write_bytes(bytes(raw))
    cases["digest-mismatch-layout"] = f"ocidir://{flipped}:latest"

    def swap_layer(name: str, body: bytes) -> bytes:
        if not name.endswith("layer.tar"):
            return body
        spoiled = bytearray(body)
        spoiled[len(spoiled) // 2] ^= 0xFF  # inside /bin/busybox: still a valid tar
        return bytes(spoiled)

    mismatch = _rewrite(archive, work / "mismatch.tar", swap_layer)
    cases["digest-mismatch-tar"] = f"tar://{mismatch}"
    return cases


BAD_INPUTS = [
    "missing-file",
    "missing-layout",
    "malformed-manifest-json",
    "malformed-index-json",
    "truncated-tar",
    "digest-mismatch-layout",
    "digest-mismatch-tar",
]
