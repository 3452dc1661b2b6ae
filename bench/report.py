"""Turn samples into the results table (medians, ratios, peak RSS, floors, targets) and write
it into ``docs/performance.md`` between two markers, keeping the rest of the file."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from .corpus import Corpus
from .jobs import JOBS, Job, Tool
from .runner import SETTLE, Sample

RSS_LIMIT = 150 * 1024 * 1024
FLOOR_LIMIT = 1.5
SIZE_LIMIT = 1.10  # D: pushed bytes at most 10% more than gzip -6
BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"
MiB = 1024 * 1024


@dataclass
class Summary:
    seconds: float | None  # median of the runs; None when a run failed or none ran
    rss: int | None  # peak over the runs
    error: str | None
    pushed: int | None
    runs: int
    times: tuple[float, ...] = ()  # every run's time, in round order (empty on failure)

    @property
    def ok(self) -> bool:
        return self.seconds is not None


def summarise(samples: list[Sample]) -> Summary | None:
    if not samples:
        return None
    rss = max((s.rss for s in samples if s.rss is not None), default=None)
    errors = [s.error for s in samples if s.error]
    pushed = next((s.pushed for s in samples if s.pushed is not None), None)
    if errors:
        return Summary(None, rss, errors[0], pushed, len(samples))
    times = tuple(s.seconds for s in samples if s.seconds is not None)
    return Summary(statistics.median(times), rss, None, pushed, len(samples), times)


def _ratios(a: Summary | None, b: Summary | None) -> list[float]:
    """Ratios of ``a`` to ``b``, paired by round: the tools of a round run back to back, so
    a pair shares the machine's state of the moment (the machine drifts from minute to
    minute). Without pairs (a different number of runs), the ratio of the medians."""
    if not (a and b and a.seconds and b.seconds):
        return []
    if len(a.times) == len(b.times) > 1 and all(b.times):
        return [x / y for x, y in zip(a.times, b.times, strict=True)]
    return [a.seconds / b.seconds]


def _ratio(a: Summary | None, b: Summary | None) -> float | None:
    """The median of the paired ratios (what the targets are checked against)."""
    pairs = _ratios(a, b)
    return statistics.median(pairs) if pairs else None


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def targets(job: Job, s: dict[Tool, Summary | None], corpus: Corpus) -> str:
    ours = s.get("ours")
    if ours is None or not ours.ok:
        return "not measured (ours failed)"
    out = []
    checks: tuple[tuple[Tool, float | None, str], ...] = (
        ("ref", job.vs_ref, "occ"),
        ("skopeo", job.vs_skopeo, "sko"),
    )
    for tool, limit, label in checks:
        if limit is not None:
            r = _ratio(ours, s.get(tool))
            out.append(f"{label} ≤{limit} " + ("n/a" if r is None else _mark(r <= limit)))
    if ours.rss is not None:
        out.append(f"RSS {_mark(ours.rss <= RSS_LIMIT)}")
    r = _ratio(ours, s.get("floor"))
    out.append("floor n/a" if r is None else f"floor {_mark(r <= FLOOR_LIMIT)}")
    if job.name == "D" and ours.pushed:
        grow = ours.pushed / corpus.compressed
        out.append(f"size {grow - 1:+.0%} {_mark(grow <= SIZE_LIMIT)}")
    return "; ".join(out)


def _secs(x: Summary | None, notes: list[str], who: str) -> str:
    if x is None:
        return "—"
    if x.ok:
        return f"{x.seconds:.2f}"
    notes.append(f"{who}: {x.error}")
    return f"FAILED[{len(notes)}]"


def _x(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}×"


def ratio_text(a: Summary | None, b: Summary | None) -> str:
    """The paired ratio's median, with the lowest and highest pair when there are several."""
    pairs = _ratios(a, b)
    if len(pairs) < 2:
        return _x(pairs[0] if pairs else None)
    return f"{statistics.median(pairs):.2f}× ({min(pairs):.2f}–{max(pairs):.2f})"


def _mb(x: Summary | None) -> str:
    return "—" if x is None or x.rss is None else f"{x.rss / MiB:.0f}"


def table(results: dict[str, dict[Tool, Summary | None]], corpus: Corpus) -> str:
    head = (
        "| job | what | ours (s) | occystrap 0.4.17 (s) | skopeo 1.9.3 (s) | ours/occ | "
        "ours/sko | peak RSS MiB ours/occ/sko | ours MB/s | floor (s) | ours/floor | "
        "targets |"
    )
    rows = [head, "|" + "---|" * 12]
    notes: list[str] = []
    for job in JOBS:
        if job.name not in results:
            continue
        s = results[job.name]
        ours, ref, sko, flo = (s.get(t) for t in ("ours", "ref", "skopeo", "floor"))
        mbs = f"{corpus.uncompressed / 1e6 / ours.seconds:.0f}" if ours and ours.seconds else "—"
        cells = [
            job.name,
            job.title,
            _secs(ours, notes, f"{job.name} ours"),
            _secs(ref, notes, f"{job.name} occystrap"),
            _secs(sko, notes, f"{job.name} skopeo"),
            ratio_text(ours, ref),
            ratio_text(ours, sko),
            f"{_mb(ours)} / {_mb(ref)} / {_mb(sko)}",
            mbs,
            _secs(flo, notes, f"{job.name} floor"),
            ratio_text(ours, flo),
            targets(job, s, corpus),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    text = "\n".join(rows)
    if notes:
        text += "\n\nFailures:\n\n" + "\n".join(f"{i}. {n}" for i, n in enumerate(notes, 1))
    sizes = [
        f"{job.name} {_who(t)} {x.pushed / 1e6:.1f} MB"
        for job in JOBS
        for t, x in results.get(job.name, {}).items()
        if x and x.pushed
    ]
    if sizes:
        text += (
            f"\n\nBytes pushed (layers, compressed; the corpus at gzip -6 is "
            f"{corpus.compressed / 1e6:.1f} MB): " + ", ".join(sizes) + "."
        )
    return text


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"


def _who(tool: Tool) -> str:
    return {"ours": "ours", "ref": "occystrap", "skopeo": "skopeo", "floor": "floor"}[tool]


def results_block(
    results: dict[str, dict[Tool, Summary | None]],
    corpus: Corpus,
    machine: dict[str, str],
    runs: int,
    quick: bool,
) -> str:
    mib = corpus.uncompressed / 1e6
    lines = [
        f"### Results{' (quick smoke run: NOT representative)' if quick else ''}",
        "",
        f"- Date: {machine['date']}; runs per tool: {runs} (median shown, tools alternated; "
        "ratios are the median of the per-round ratios, lowest and highest in brackets).",
        f"- Machine: {machine['cpu']}, {machine['memory']}, {machine['kernel']}, "
        f"{machine['os']}; load average at start {machine['load']}, at the end "
        f"{machine.get('load_end', '?')}.",
        f"- Python {machine['python']}; {machine['libraries']}.",
        f"- Tools: ours = `{machine['ours']}`; {machine['ref']}; {machine['skopeo']}; "
        f"{machine['registry']}.",
        f"- Start-up alone (`--version`/`--help`, median of 3): {machine['startup']}.",
        f"- Free page reporting to the host: {machine.get('page_reporting', '?')}"
        + (
            f" (every run, floors included, starts {SETTLE:.0f} s after its output was removed)"
            if SETTLE
            else ""
        )
        + ".",
        f"- Corpus: scale {corpus.scale}, seed {corpus.seed}: {mib:.0f} MB uncompressed, "
        f"{corpus.compressed / 1e6:.0f} MB gzip -6, {sum(corpus.entries)} tar entries in "
        f"{len(corpus.entries)} layers ({', '.join(_size(x) for x in corpus.tar_sizes)}).",
        "",
        table(results, corpus),
    ]
    return "\n".join(lines)


TEMPLATE = """# Performance

Measured by `make bench` (`bench/`); see issue 6 for the targets. Everything between the
two markers below is rewritten by each full run; the rest of this file is kept.

{begin}
{end}
"""


def write_doc(path: Path, block: str) -> None:
    """Replace the results block of ``path`` (creating the file from a template if needed)."""
    text = path.read_text() if path.exists() else TEMPLATE.format(begin=BEGIN, end=END)
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}")
