"""Smoke test of the benchmark corpus generator (bench/) at a tiny size. No timings.

The benchmark compares runs across days, so its corpus must be the same image every time:
the same seed must give the same layers (diff_ids), and the cached build must be reused.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import corpus  # noqa: E402

SCALE = 0.0005  # 20 small files, 100 kB random, 2 text files


def _sha256_gunzip(path: Path) -> str:
    digest = hashlib.sha256()
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def test_same_seed_gives_same_layers(tmp_path: Path) -> None:
    first = corpus.build_corpus(tmp_path / "a", SCALE, seed=7)
    second = corpus.build_corpus(tmp_path / "b", SCALE, seed=7)
    assert first.diff_ids == second.diff_ids
    assert first.layer_digests == second.layer_digests
    assert first.config_digest == second.config_digest
    assert corpus.diff_ids(7, SCALE) == first.diff_ids  # streaming hash == what was written
    other = corpus.diff_ids(8, SCALE)
    assert all(a != b for a, b in zip(other[:3], first.diff_ids[:3], strict=True))


def test_corpus_is_a_consistent_image(tmp_path: Path) -> None:
    built = corpus.build_corpus(tmp_path, SCALE, seed=3)
    assert len(built.diff_ids) == 4
    for digest, diff_id in zip(built.layer_digests, built.diff_ids, strict=True):
        blob = built.blob(digest)
        assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == digest
        assert _sha256_gunzip(blob) == diff_id
    config = json.loads(built.blob(built.config_digest).read_bytes())
    assert config["rootfs"]["diff_ids"] == built.diff_ids

    with tarfile.open(built.docker_tar) as outer:
        manifest = json.loads(outer.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert manifest[0]["RepoTags"] == [corpus.REPO_TAG]
        layers = []
        for name in manifest[0]["Layers"]:
            data = outer.extractfile(name).read()  # type: ignore[union-attr]
            assert "sha256:" + hashlib.sha256(data).hexdigest() in built.diff_ids
            layers.append(tarfile.open(fileobj=io.BytesIO(data)).getmembers())
    small, patch = layers[0], layers[3]
    assert any(m.issym() for m in small) and any(m.islnk() for m in small)
    names = [m.name.rsplit("/", 1)[-1] for m in patch]
    assert ".wh..wh..opq" in names
    assert sum(n.startswith(".wh.") and n != ".wh..wh..opq" for n in names) >= 2


def test_cache_is_reused_and_keyed_by_parameters(tmp_path: Path) -> None:
    built = corpus.build_corpus(tmp_path, SCALE, seed=5)
    stamp = (built.root / "corpus.json").stat().st_mtime_ns
    again = corpus.build_corpus(tmp_path, SCALE, seed=5)
    assert again.root == built.root
    assert (again.root / "corpus.json").stat().st_mtime_ns == stamp
    assert corpus.params_key(SCALE, 5) != corpus.params_key(SCALE, 6)
    assert corpus.params_key(SCALE, 5) != corpus.params_key(SCALE * 2, 5)


def test_ratios_are_paired_by_round() -> None:
    """A machine that slows down mid-run moves both tools of a round: the paired ratio
    stays put where the ratio of medians would not."""
    from bench.report import Summary, _ratio, ratio_text

    def summary(*times: float) -> Summary:
        return Summary(sorted(times)[len(times) // 2], None, None, None, len(times), times)

    ours, ref = summary(1.0, 1.0, 3.0), summary(2.0, 6.0, 6.0)
    assert _ratio(ours, ref) == 0.5  # rounds: 0.5, 1/6, 0.5; medians alone would give 1/6
    assert ratio_text(ours, ref) == "0.50× (0.17–0.50)"
    assert _ratio(ours, summary(4.0)) == 0.25  # no pairs: the ratio of the medians
    assert _ratio(ours, Summary(None, None, "failed", None, 1)) is None


def test_compare_runs_each_side_from_its_own_compiled_tree(tmp_path: Path) -> None:
    """An exported tree without bytecode compiles every module on every run when the
    environment sets PYTHONDONTWRITEBYTECODE: that once made an old side 60-80 ms slower."""
    import importlib.util
    import subprocess

    from bench import compare

    side = compare.prepare("HEAD", trees=tmp_path)
    modules = list(side.src.rglob("*.py"))
    assert len(modules) > 50 and (side.src / "occystrap" / "cli" / "main.py") in modules
    missing = [m for m in modules if not Path(importlib.util.cache_from_source(str(m))).is_file()]
    assert missing == []
    assert compare.prepare("HEAD", trees=tmp_path).src == side.src  # exported once
    done = subprocess.run([side.launcher, "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and "occystrap" in done.stdout

    fake = tmp_path / "fake" / "src" / "occystrap"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text("print(__file__)\n")
    launcher = compare._launcher(fake.parent, tmp_path / "launch-fake")
    done = subprocess.run([launcher], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(fake / "__main__.py")  # not the installed package


def test_compare_table_pairs_rounds_and_reports_cpu() -> None:
    from bench.compare import table
    from bench.runner import Sample

    old = [Sample(1.0, 50 << 20, cpu=0.8), Sample(2.0, 52 << 20, cpu=0.9)]
    new = [Sample(0.5, 40 << 20, cpu=0.4), Sample(2.0, 41 << 20, cpu=0.5)]
    row = table({"B'": (old, new)}).splitlines()[2]
    assert row == "| B' | 1.500 | 1.250 | 0.75× (0.50–1.00) | 0.850 | 0.450 | 52 / 41 |"


def test_jobs_are_selected_by_name_in_table_order() -> None:
    from bench.jobs import round_ctx, select

    assert [j.name for j in select("E2,B2,A")] == ["A", "B'", "E'"]
    assert select("Z") == []
    job = select("B'")[0]
    ctx = round_ctx(
        job,
        "ours",
        3,
        corpus=None,  # type: ignore[arg-type]
        hosts=("h1", "h2"),
        out=Path("/o"),
        tools=("a", "b", "c"),
    )
    assert (ctx.repo, ctx.reg1, ctx.reg2, ctx.ours, ctx.ref, ctx.skopeo) == (
        "bench/b2-ours-3",
        "h1",
        "h2",
        "a",
        "b",
        "c",
    )


def test_page_reporting_is_read_from_the_balloon_features(tmp_path: Path) -> None:
    """Bit 5 of a virtio balloon's feature string (VIRTIO_BALLOON_F_REPORTING) makes every
    bench run wait before it starts; other bits, or no balloon, do not."""
    from bench.env import page_reporting

    assert page_reporting(tmp_path / "absent") is False
    device = tmp_path / "virtio3"
    device.mkdir()
    (device / "features").write_text("0110000100000000\n")  # stats, deflate-on-oom, bit 7
    assert page_reporting(tmp_path) is False
    other = tmp_path / "virtio4"
    other.mkdir()
    (other / "features").write_text("0110010100000000\n")
    assert page_reporting(tmp_path) is True


def test_every_run_waits_the_same_after_cleaning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Floors and tools alike: the output directory is emptied, then the run waits SETTLE."""
    import time

    from bench import runner

    waits: list[float] = []
    monkeypatch.setattr(runner, "SETTLE", 3.0)
    monkeypatch.setattr(time, "sleep", waits.append)
    out = tmp_path / "out"
    out.mkdir()
    (out / "left-over").write_bytes(b"x")
    runner.clean(out)
    assert out.is_dir() and list(out.iterdir()) == []
    assert waits == [3.0]
