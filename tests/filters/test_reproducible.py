"""normalize-timestamps makes images reproducible: two builds of the same content made at
different times (other mtimes, atime/ctime records, config dates, even another compression)
give byte-identical layers, config and manifest through ocidir://, tar:// and registry://."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
from test_filters import blob, judge_archive, judge_layout, process, read_layout

from lab.edgecase import edge_case_layers
from lab.ocilayout import LayoutInfo, build_oci_layout
from lab.registry import Registry
from lab.tarspec import TarSpec
from lab.tools import OccystrapRunner, skopeo
from occystrap.model.config import rfc3339


def build(path: Path, when: int, compression: str) -> LayoutInfo:
    """The edge-case image "built" at ``when``: every mtime, atime/ctime and date differs."""

    def stamp(spec: TarSpec, i: int) -> TarSpec:
        pax = dict(spec.pax)
        if spec.kind == "file" and i % 2:
            pax.update(atime=f"{when + i}.5", ctime=str(when + 2 * i))
        return dataclasses.replace(spec, mtime=when + i, pax=pax)

    layers = [[stamp(s, i) for i, s in enumerate(layer)] for layer in edge_case_layers()]
    date = rfc3339(when)
    overrides = {
        "created": date,
        "history": [{"created": date, "created_by": f"step {i}"} for i in range(3)],
    }
    return build_oci_layout(path, layers, overrides, compression=compression)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[LayoutInfo, LayoutInfo]:
    root = tmp_path_factory.mktemp("builds")
    first = build(root / "monday", 1_700_000_000, "gzip")
    second = build(root / "friday", 1_700_400_000, "zstd")
    assert first.diff_ids != second.diff_ids and first.config != second.config
    return first, second


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_ocidir_outputs_are_identical(
    builds: tuple[LayoutInfo, LayoutInfo],
    tmp_path: Path,
    run_occystrap: OccystrapRunner,
    compression: str,
) -> None:
    outs = []
    for i, info in enumerate(builds):
        out = tmp_path / f"out{i}"
        done = run_occystrap(
            "--compression", compression, "process", f"ocidir://{info.path}:latest", f"ocidir://{out}:v1",
            "-f", "normalize-timestamps:ts=1600000000",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        outs.append(out)
    assert files_of(outs[0]) == files_of(outs[1])  # every blob, index.json and oci-layout
    manifest, config, _ = read_layout(outs[0], "v1")
    assert config["created"] == "2020-09-13T12:26:40Z"
    assert {h["created"] for h in config["history"]} == {"2020-09-13T12:26:40Z"}
    suffix = "+gzip" if compression == "gzip" else "+zstd"
    assert all(d["mediaType"].endswith(suffix) for d in manifest["layers"])
    judge_layout(outs[0], "v1", tmp_path, unpack=compression == "gzip")


def test_tar_outputs_are_identical(
    builds: tuple[LayoutInfo, LayoutInfo], tmp_path: Path, run_occystrap: OccystrapRunner
) -> None:
    outs = []
    for i, info in enumerate(builds):
        out = tmp_path / f"out{i}.tar"
        done = run_occystrap(
            "process", f"ocidir://{info.path}:latest", f"tar://{out}?tag=lab/app:v1", "-f", "normalize-timestamps",
            env={"SOURCE_DATE_EPOCH": "1234567890"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        outs.append(out)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    judge_archive(outs[0], tmp_path)
    check = tmp_path / "check-archive"
    index = json.loads((check / "index.json").read_text())
    manifest = json.loads(blob(check, index["manifests"][0]["digest"]).read_bytes())
    config = json.loads(blob(check, manifest["config"]["digest"]).read_bytes())
    assert config["created"] == rfc3339(1234567890)


def test_normalized_image_is_a_fixed_point(
    builds: tuple[LayoutInfo, LayoutInfo], tmp_path: Path
) -> None:
    """Normalizing again changes nothing: every blob and the manifest are passed as they are."""
    first = process(
        f"ocidir://{builds[0].path}:latest",
        f"ocidir://{tmp_path / 'a'}:v1",
        ["normalize-timestamps"],
    )
    again = process(
        f"ocidir://{tmp_path / 'a'}:v1", f"ocidir://{tmp_path / 'b'}:v1", ["normalize-timestamps"]
    )
    assert again.manifest.digest == first.manifest.digest
    assert [w.outcome for w in again.layers] == ["copied"] * 3


def test_registry_outputs_are_identical(
    builds: tuple[LayoutInfo, LayoutInfo],
    registry_plain: Registry,
    tmp_path: Path,
    run_occystrap: OccystrapRunner,
) -> None:
    digests = []
    for i, info in enumerate(builds):
        dest = f"registry://{registry_plain.host}/repro/app:build{i}?insecure=true"
        done = run_occystrap(
            "process", f"ocidir://{info.path}:latest", dest, "-f", "normalize-timestamps"
        )
        assert done.returncode == 0, done.stderr
        raw = skopeo(
            "inspect",
            "--raw",
            *registry_plain.skopeo_args("plain"),
            registry_plain.ref("repro/app", f"build{i}"),
        )
        digests.append(hashlib.sha256(raw.stdout.encode()).hexdigest())
        check = tmp_path / f"check{i}"
        skopeo(
            "copy",
            *registry_plain.skopeo_args("src"),
            registry_plain.ref("repro/app", f"build{i}"),
            f"oci:{check}:x",
        )
    assert digests[0] == digests[1]
    # the pushed image is the one the layout output holds, blob for blob
    process(
        f"ocidir://{builds[1].path}:latest",
        f"ocidir://{tmp_path / 'layout'}:v1",
        ["normalize-timestamps"],
    )
    _, _, raw_layout = read_layout(tmp_path / "layout", "v1")
    assert hashlib.sha256(raw_layout).hexdigest() == digests[0]
