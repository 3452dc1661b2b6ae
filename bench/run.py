"""``make bench``: run every job with our tool, occystrap 0.4.17, skopeo and the floor.

Usage (from the repository root)::

    .venv/bin/python -m bench.run                 # full corpus, 3 runs, writes docs/performance.md
    .venv/bin/python -m bench.run --quick         # 1/5 corpus, 1 run, writes bench/work/
    .venv/bin/python -m bench.run --jobs A,C --tools ours,floor --runs 5

Runs alternate the tools (the order rotates every round) so that load from elsewhere on a
shared machine hits them alike. Everything lives under ``bench/work/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from .corpus import build_corpus
from .env import ROOT, compile_ours, ensure_ref_venv, load, machine, start_registries, tool_path
from .jobs import JOBS, TOOLS, Tool, round_ctx, select
from .report import Summary, results_block, summarise, table, write_doc
from .runner import Sample, run_tool

WORK = ROOT / "bench" / "work"
DOC = ROOT / "docs" / "performance.md"


def log(message: str) -> None:
    print(message, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1/5 corpus, 1 run: a smoke test")
    p.add_argument("--runs", type=int, help="runs per tool and job (default 3; quick 1)")
    p.add_argument("--scale", type=float, help="corpus scale (default 1; quick 0.2)")
    p.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    p.add_argument(
        "--jobs", default=",".join(j.name for j in JOBS), help="e.g. A,B2,C (B2/E2 = B'/E')"
    )
    p.add_argument("--tools", default=",".join(TOOLS), help="subset of ours,ref,skopeo,floor")
    p.add_argument("--timeout", type=float, default=600, help="seconds per run (default 600)")
    p.add_argument(
        "--doc",
        type=Path,
        help="Markdown file for the results (default: "
        "docs/performance.md, or bench/work/performance-quick.md with --quick)",
    )
    args = p.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    args.scale = args.scale or (0.2 if args.quick else 1.0)
    args.doc = args.doc or (WORK / "performance-quick.md" if args.quick else DOC)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    jobs = select(args.jobs)
    tools: list[Tool] = [t for t in TOOLS if t in args.tools.split(",")]
    if not jobs or not tools:
        raise SystemExit("bench: no job or no tool selected")
    WORK.mkdir(parents=True, exist_ok=True)
    corpus = build_corpus(WORK, args.scale, args.seed, log)
    ref = ensure_ref_venv(WORK)
    compile_ours()
    ours = str(ROOT / ".venv" / "bin" / "occystrap")
    info = machine(ours, ref)
    run_dir = WORK / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    log(
        f"bench: {corpus.uncompressed / 1e6:.0f} MB corpus, jobs {','.join(j.name for j in jobs)}, "
        f"tools {','.join(tools)}, {args.runs} run(s) each"
    )
    regs = start_registries(run_dir, corpus)
    samples: dict[str, dict[Tool, list[Sample]]] = {}
    peak_load = 0.0
    try:
        for j, job in enumerate(jobs):
            per_tool: dict[Tool, list[Sample]] = {t: [] for t in tools}
            samples[job.name] = per_tool
            for r in range(args.runs):
                shift = (j + r) % len(tools)
                for tool in tools[shift:] + tools[:shift]:
                    if any(s.error for s in per_tool[tool]):
                        continue  # failed once: do not waste time on it
                    ctx = round_ctx(
                        job,
                        tool,
                        r,
                        corpus=corpus,
                        hosts=(regs[0].host, regs[1].host),
                        out=run_dir / "out",
                        tools=(ours, ref, tool_path("skopeo")),
                    )
                    peak_load = max(peak_load, os.getloadavg()[0])
                    sample = run_tool(job, tool, ctx, args.timeout)
                    if sample is None:
                        continue
                    per_tool[tool].append(sample)
                    shown = f"{sample.seconds:.2f} s" if sample.seconds is not None else "FAILED"
                    rss = f", {sample.rss / 2**20:.0f} MiB" if sample.rss else ""
                    log(
                        f"  {job.name:3} run {r + 1} {tool:6} {shown}{rss}"
                        + (f"  ({sample.error})" if sample.error else "")
                    )
    finally:
        for reg in regs:
            reg.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    info["load_end"] = f"{load()} (highest 1-minute value seen: {peak_load:.2f})"
    results: dict[str, dict[Tool, Summary | None]] = {
        name: {t: summarise(v) for t, v in per.items()} for name, per in samples.items()
    }
    block = results_block(results, corpus, info, args.runs, args.quick)
    write_doc(args.doc, block)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    raw = {
        "machine": info,
        "args": {k: str(v) for k, v in vars(args).items()},
        "samples": {
            n: {t: [asdict(s) for s in v] for t, v in per.items()} for n, per in samples.items()
        },
    }
    (WORK / "results").mkdir(exist_ok=True)
    (WORK / "results" / f"{stamp}.json").write_text(json.dumps(raw, indent=1))
    log("\n" + table(results, corpus))
    log(f"\nbench: results written to {os.path.relpath(args.doc, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
