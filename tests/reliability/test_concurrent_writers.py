"""Several processes writing one store at once, through a filter, so shared *rewritten* layers race.

``tests/transports/test_ocilayout.py`` and ``tests/transports/test_directory.py`` already run
four writers into one ``ocidir://`` layout and one ``dir://?unique_names=true`` store (with and
without ``expand``) with layers copied unchanged. Here every writer applies
``normalize-timestamps``: the shared base and the shared 6 MiB middle layer are rewritten by
every process at the same moment, so the same new digest is renamed into place by all of
them (and, for ``ocidir``, compressed by all of them). The result must equal what the same
images give written one after another: the same catalog (dir) or the same manifest digests
(ocidir), every blob or layer file hashing to its name, no temporary files left, and one image
of it accepted by skopeo.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import images
from lab.ocilayout import LayoutInfo, canonical_json
from lab.tarspec import file
from lab.tools import skopeo
from occystrap import api

from .harness import assert_layout_blobs_intact, index_refs, record, sha256_file

WRITERS = 4
PER_WRITER = 2
FILTER = "normalize-timestamps:ts=0"
CONTAINERD_NAME = "io.containerd.image.name"

_WRITER = """
import sys, time
from occystrap import api
src, dest, start, refs, filt = sys.argv[1:6]
time.sleep(max(0.0, float(start) - time.time()))  # all writers start together
for ref in refs.split(","):
    print(api.process(f"ocidir://{src}:{ref}", dest.format(ref=ref), [filt]).description)
"""


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, list[str]]]:
    """WRITERS layouts of PER_WRITER images: busybox + a shared 6 MiB layer + their own file."""
    work = tmp_path_factory.mktemp("concurrent-sources")
    common = images.big_layer_file(work / "common.tar", 6 << 20, seed=99, files=3)
    base = images.busybox_layers()[0]
    out = []
    for i in range(WRITERS):
        path = work / f"src{i}"
        refs = []
        for k in range(PER_WRITER):
            ref = f"img{i}-{k}"
            own = [file(f"app/img{i}-{k}.txt", f"image {i} {k}\n" * 500)]
            info: LayoutInfo = images.build_oci_layout(path, [base, common.path, own], tag=ref)
            assert info.layer_digests[1]  # built
            refs.append(ref)
        index = json.loads((path / "index.json").read_text())
        for entry in index["manifests"]:
            ref = entry["annotations"]["org.opencontainers.image.ref.name"]
            entry["annotations"][CONTAINERD_NAME] = f"lab/app{i}:{ref.split('-')[1]}"
        (path / "index.json").write_bytes(canonical_json(index))
        out.append((path, refs))
    return out


DESTS = {
    "dir": "dir://{root}?unique_names=true",
    "dir-expand": "dir://{root}?unique_names=true&expand=true",
    "ocidir": "ocidir://{root}:{{ref}}",
}


def leftovers(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob(".tmp-*"))


def check_store(root: Path) -> dict[str, object]:
    """Every layer/config file hashes to its name and every catalog entry is whole."""
    for layer in root.glob("*/layer.tar"):
        assert sha256_file(layer) == "sha256:" + layer.parent.name, f"corrupt {layer}"
    catalog: dict[str, object] = json.loads((root / "catalog.json").read_text())
    for name, tags in catalog.items():
        assert isinstance(tags, dict)
        for tag, entry in tags.items():
            manifest = json.loads((root / entry["manifest"]).read_text())
            assert manifest[0]["Layers"] == entry["layers"]
            assert manifest[0]["RepoTags"] == [f"{name}:{tag}"]
            assert sha256_file(root / entry["config"]) == "sha256:" + entry["config"][:-5]
            for layer in entry["layers"]:
                assert (root / layer).is_file()
            if "rootfs" in entry:
                assert (root / entry["rootfs"] / "bin" / "busybox").stat().st_mtime == 0
    return catalog


@pytest.mark.parametrize("kind", list(DESTS))
def test_writers_racing_on_filtered_shared_layers(
    kind: str,
    sources: list[tuple[Path, list[str]]],
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in env.items():  # caches and temp files stay under tmp_path
        monkeypatch.setenv(key, value)
    Path(env["OCCYSTRAP_TEMP_DIR"]).mkdir(parents=True, exist_ok=True)
    template = DESTS[kind]
    reference = tmp_path / "reference"
    for src, refs in sources:  # one after another: what the store must end up as
        for ref in refs:
            api.process(
                f"ocidir://{src}:{ref}", template.format(root=reference).format(ref=ref), [FILTER]
            )
    shared = tmp_path / "shared"
    start = str(time.time() + 1.5)
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WRITER,
                str(src),
                template.format(root=shared),
                start,
                ",".join(refs),
                FILTER,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **env},
        )
        for src, refs in sources
    ]
    said = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        said.append(out.decode().splitlines())
    # dir: every writer rewrote the shared layers at the same time; this many renamed their
    # result into place, the others found it there when done and dropped their copy
    raced = sum(1 for lines in said if lines and "0 already stored" in lines[0])
    seconds = time.monotonic() - started - 1.5
    assert leftovers(shared) == []
    if kind == "ocidir":
        blobs = assert_layout_blobs_intact(shared)
        assert index_refs(shared) == index_refs(reference)
        assert len(index_refs(shared)) == WRITERS * PER_WRITER
        assert sorted(blobs) == sorted(assert_layout_blobs_intact(reference))
        for ref in ("img0-0", f"img{WRITERS - 1}-{PER_WRITER - 1}"):
            skopeo("copy", f"oci:{shared}:{ref}", f"oci:{tmp_path / 'judge'}:{ref}")
        count = len(blobs)
    else:
        catalog = check_store(shared)
        assert catalog == check_store(reference)
        assert len(catalog) == WRITERS and all(len(t) == PER_WRITER for t in catalog.values())  # type: ignore[arg-type]
        count = len(list(shared.glob("*/layer.tar")))
        assert count == 2 + WRITERS * PER_WRITER  # busybox and the common layer once each
        assert sorted(p.name for p in shared.glob("*/layer.tar")) == sorted(
            p.name for p in reference.glob("*/layer.tar")
        )
        if kind == "dir-expand":
            for name, tags in catalog.items():
                for tag, entry in tags.items():  # type: ignore[attr-defined]
                    own = shared / entry["rootfs"] / "app" / f"img{name[-1]}-{tag}.txt"
                    assert own.is_file() and own.stat().st_mtime == 0
        entry = catalog["lab/app0"]["0"]  # type: ignore[index]
        archive = tmp_path / "judge.tar"
        import tarfile

        with tarfile.open(archive, "w") as tar:
            tar.add(shared / entry["config"], entry["config"])
            for layer in entry["layers"]:
                tar.add(shared / layer, layer)
            tar.add(shared / entry["manifest"], "manifest.json")
        skopeo("copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'judge'}:x")
    record(
        "concurrency",
        target=kind,
        writers=WRITERS,
        images=WRITERS * PER_WRITER,
        filter=FILTER,
        files=count,
        shared_layers_renamed_by=raced if kind != "ocidir" else None,
        shared_layers_dropped_as_already_stored_by=WRITERS - raced if kind != "ocidir" else None,
        seconds=round(seconds, 1),
        outcome="identical to the sequential reference; all blobs intact; no temporary files",
    )
