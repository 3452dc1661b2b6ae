"""Two versions of ours alternated on the benchmark's jobs: what one change gains.

Usage (from the repository root)::

    .venv/bin/python -m bench.compare --old HEAD~1               # against the working tree
    .venv/bin/python -m bench.compare --old A --new B --jobs B2,C0 --runs 12
    .venv/bin/python -m bench.compare --old HEAD~1 --jobs E,E2 --tls  # registries over HTTPS

Each side runs from a source tree of its own, compiled to bytecode first. A tree exported
without bytecode compiles every module on every run when the environment sets
``PYTHONDONTWRITEBYTECODE`` (this VM's does): that once made an old side look 60-80 ms
slower than it was (docs/performance.md, seventh session). Both sides start the same way,
``python -m occystrap`` with their tree first on ``PYTHONPATH``, against the bench's own
registries and corpus, and their outputs are checked as the bench checks them.

Rounds alternate which side runs first. The table gives each side's median wall time and
CPU time (user + system, steadier than wall time on a shared machine) and the median of
the per-round ratios new / old, with the lowest and highest round.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.lab.registry import Registry

from .corpus import build_corpus
from .env import PYTHON, ROOT, compile_ours, start_registries, tool_path
from .jobs import Job, round_ctx, select
from .report import ratio_text, summarise
from .runner import Sample, run_tool

WORK = ROOT / "bench" / "work"
TREES = WORK / "compare"
WORKING_TREE = "."


@dataclass(frozen=True)
class Side:
    label: str  # the revision as given, or "." for the working tree
    src: Path  # the tree's src/ directory, compiled
    launcher: Path  # runs ``python -m occystrap`` from ``src``


def log(message: str) -> None:
    print(message, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, help="git revision of the old side")
    p.add_argument("--new", default=WORKING_TREE, help="git revision, or . (working tree)")
    p.add_argument("--jobs", default="B2", help="e.g. A,B2,C0 (B2/E2 = B'/E'); default B2")
    p.add_argument("--runs", type=int, default=10, help="rounds (default 10)")
    p.add_argument("--scale", type=float, default=1.0, help="corpus scale (default 1)")
    p.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per run (default 600)")
    p.add_argument(
        "--tls",
        action="store_true",
        help="registries over HTTPS with CAs of their own (ours gets --ca-file, not --insecure)",
    )
    return p.parse_args(argv)


def prepare(revision: str, trees: Path = TREES) -> Side:
    """The side that runs ``revision``: its ``src/`` exported and compiled once (kept under
    ``trees`` by commit), or the working tree's own ``src/`` (compiled)."""
    if revision == WORKING_TREE:
        compile_ours()
        src = ROOT / "src"
        name = "working-tree"
    else:
        commit = _git("rev-parse", "--verify", "--end-of-options", f"{revision}^{{commit}}")
        name = commit[:12]
        src = trees / name / "src"
        if not src.is_dir():
            _export(commit, trees / name)
    return Side(revision, src, _launcher(src, trees / f"launch-{name}"))


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"bench.compare: git {args[0]}: {done.stderr.strip()}")
    return done.stdout.strip()


def _export(commit: str, dest: Path) -> None:
    """``src/`` of ``commit`` with its bytecode, built aside and renamed into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".export-") as tmp:
        archive = Path(tmp) / "src.tar"
        with archive.open("wb") as out:
            subprocess.run(
                ["git", "-C", str(ROOT), "archive", commit, "src"], stdout=out, check=True
            )
        tree = Path(tmp) / "tree"
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter="data")
        compile_ours(tree / "src")
        tree.rename(dest)


def _launcher(src: Path, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\nPYTHONPATH="{src}" exec "{PYTHON}" -m occystrap "$@"\n')
    path.chmod(0o755)
    return path


def run(args: argparse.Namespace) -> str:
    jobs = _jobs(args.jobs)
    corpus = build_corpus(WORK, args.scale, args.seed, log)
    sides = [prepare(args.old), prepare(args.new)]
    run_dir = WORK / "compare-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    over = "HTTPS" if args.tls else "plain HTTP"
    log(f"bench.compare: old {sides[0].label}, new {sides[1].label}, {args.runs} rounds, {over}")
    regs = start_registries(run_dir, corpus, tls=args.tls)
    ca_file = _trust(regs, run_dir / "ca.pem") if args.tls else None
    samples: dict[str, tuple[list[Sample], list[Sample]]] = {}
    try:
        for job in jobs:
            per_side: tuple[list[Sample], list[Sample]] = ([], [])
            samples[job.name] = per_side
            for r in range(args.runs):
                for i in (0, 1) if r % 2 == 0 else (1, 0):
                    side = sides[i]
                    ctx = round_ctx(
                        job,
                        f"compare-{i}",
                        r,
                        corpus=corpus,
                        hosts=(regs[0].host, regs[1].host),
                        out=run_dir / "out",
                        tools=(str(side.launcher), "", tool_path("skopeo")),  # no 0.4.17 here
                        ca_file=ca_file,
                    )
                    sample = run_tool(job, "ours", ctx, args.timeout)
                    if sample is None:
                        raise SystemExit(f"bench.compare: job {job.name} has no command of ours")
                    if sample.error:
                        raise SystemExit(f"bench.compare: {job.name} {side.label}: {sample.error}")
                    per_side[i].append(sample)
                    log(f"  {job.name:3} round {r + 1} {('old', 'new')[i]} {sample.seconds:.3f} s")
    finally:
        for reg in regs:
            reg.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    return table(samples)


def _trust(regs: list[Registry], path: Path) -> str:
    """One file with both registries' CA certificates (``--ca-file`` takes one)."""
    path.write_text("".join(Path(str(reg.ca_file)).read_text() for reg in regs))
    return str(path)


def _jobs(names: str) -> list[Job]:
    jobs = select(names)
    if len(jobs) != len(names.split(",")):
        raise SystemExit(f"bench.compare: unknown job in {names!r}")
    return jobs


def table(samples: dict[str, tuple[list[Sample], list[Sample]]]) -> str:
    """Markdown: per job, each side's median wall and CPU time, and new / old by round."""
    rows = [
        "| job | old (s) | new (s) | new / old | CPU old (s) | CPU new (s) | peak RSS MiB old / new |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, (old, new) in samples.items():
        a, b = summarise(old), summarise(new)
        if a is None or b is None or a.seconds is None or b.seconds is None:
            continue
        rows.append(
            f"| {name} | {a.seconds:.3f} | {b.seconds:.3f} | {ratio_text(b, a)} "
            f"| {_cpu(old)} | {_cpu(new)} | {_mib(a.rss)} / {_mib(b.rss)} |"
        )
    return "\n".join(rows)


def _cpu(samples: list[Sample]) -> str:
    cpu = [s.cpu for s in samples if s.cpu is not None]
    return f"{statistics.median(cpu):.3f}" if cpu else "—"


def _mib(rss: int | None) -> str:
    return "—" if rss is None else f"{rss / 2**20:.0f}"


def main(argv: list[str] | None = None) -> int:
    print(run(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
