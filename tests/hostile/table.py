"""Print the hostile-corpus table of docs/reliability.md (cases and runs per class).

    .venv/bin/python -m tests.hostile.table

Each cell is ``refused/carried`` runs for that output; the suite (``tests/hostile``) checks
every run against exactly these expectations.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from hostile.cases import OUTPUTS, all_cases  # noqa: E402

ORDER = (
    "stream", "archive", "tar-header", "bomb", "paths", "links", "devices", "duplicates",
    "whiteouts", "json", "descriptors", "digests", "media-types", "loops",
)  # fmt: skip


def table() -> str:
    cases = all_cases()
    per_class: dict[str, list[int]] = defaultdict(lambda: [0] * (2 * len(OUTPUTS) + 1))
    for case in cases:
        row = per_class[case.cls]
        row[0] += 1
        for i, output in enumerate(OUTPUTS):
            if output in case.outputs:
                row[1 + 2 * i + (case.expect(output) == "carry")] += 1
    head = "| class | cases | " + " | ".join(f"`{o}`" for o in OUTPUTS) + " | runs |"
    lines = [head, "|---|---:|" + "---:|" * len(OUTPUTS) + "---:|"]
    total = [0] * (2 * len(OUTPUTS) + 1)
    for cls in sorted(per_class, key=lambda c: ORDER.index(c) if c in ORDER else 99):
        row = per_class[cls]
        total = [a + b for a, b in zip(total, row, strict=True)]
        lines.append(_line(cls, row))
    lines.append(_line("**all**", total))
    return "\n".join(lines)


def _line(name: str, row: list[int]) -> str:
    cells = [f"{row[1 + 2 * i]}/{row[2 + 2 * i]}" for i in range(len(OUTPUTS))]
    return f"| {name} | {row[0]} | " + " | ".join(cells) + f" | {sum(row[1:])} |"


if __name__ == "__main__":
    print(table())
