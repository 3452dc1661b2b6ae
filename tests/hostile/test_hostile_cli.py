"""The hostile corpus end to end: every case through the CLI into every output.

A refused case must exit non-zero with exactly one ``occystrap: error:`` line (matching the
case's expected error, never "internal error", never a traceback), write nothing outside
its target, leave ``--temp-dir`` empty and leave no complete-looking output. A carried case
must complete with the same guarantees about the outside. After all runs, the lab's escape
spots (``/tmp/occystrap-lab-hostile*``) must be untouched. The runs execute four at a time
in a session fixture; each (case, output) is then one test item.

Reproduce the table in docs/reliability.md with::

    .venv/bin/pytest tests/hostile -q -rN
    .venv/bin/python -m tests.hostile.table        # counts per class and output
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.hostile import ESCAPE_DIR, SENTINEL

from .build import build_case
from .cases import CORPUS, OUTPUTS, Case, all_cases
from .runner import Run, problems, run_all, verify_corpus_files

CASES = {c.id: c for c in all_cases()}
SENTINEL_TEXT = b"sentinel: hostile input must not change this file\n"


@pytest.fixture(scope="session")
def hostile_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[tuple[str, str], Run]]:
    root = tmp_path_factory.mktemp("hostile")
    for path in glob.glob("/tmp/occystrap-lab-hostile*"):
        if os.path.isdir(path) and not os.path.islink(path):
            raise AssertionError(f"{path} exists before the hostile runs: remove it and rerun")
        os.unlink(path)
    Path(SENTINEL).write_bytes(SENTINEL_TEXT)
    for case in CASES.values():
        if case.generated:
            build_case(case, root / "generated" / case.id)
    wanted = set()  # only what this session selected (-k), else everything
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "case_id" in params:
            wanted.add((params["case_id"], params["output"]))
    if not wanted:
        wanted = {(c.id, o) for c in CASES.values() for o in c.outputs}
    yield run_all(wanted, OUTPUTS, root / "generated", root / "runs")


def _params() -> list[object]:
    return [
        pytest.param(c.id, o, id=f"{c.id}-{o}")
        for c in CASES.values()
        for o in OUTPUTS
        if o in c.outputs
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("case_id", "output"), _params())
def test_case_into_output(
    hostile_runs: dict[tuple[str, str], Run], case_id: str, output: str
) -> None:
    run = hostile_runs[(case_id, output)]
    bad = problems(run)
    assert not bad, (
        f"{case_id} -> {output} (expected {run.case.expect(output)}): "
        + "; ".join(bad)
        + f"\n--- stderr ---\n{run.stderr[-3000:]}"
    )


@pytest.mark.slow
def test_nothing_escaped(hostile_runs: dict[tuple[str, str], Run]) -> None:
    """The escape spots are untouched: no escape dir, sentinel unchanged and not linked."""
    assert hostile_runs
    assert not os.path.lexists(ESCAPE_DIR), f"{ESCAPE_DIR} was created"
    others = sorted(set(glob.glob("/tmp/occystrap-lab-hostile*")) - {SENTINEL})
    assert not others, f"written outside every target: {others}"
    st = os.lstat(SENTINEL)
    assert Path(SENTINEL).read_bytes() == SENTINEL_TEXT and st.st_nlink == 1


def test_corpus_matches_cases_json() -> None:
    """Every checked-in case exists, is listed, and has the bytes cases.json records."""
    records = {r["id"]: r for r in json.loads((CORPUS / "cases.json").read_text())}
    assert set(records) == set(CASES), "cases.json is stale: run python -m tests.hostile.build"
    for case in CASES.values():
        if case.generated:
            continue
        changed = verify_corpus_files(case, records[case.id]["files"])
        assert not changed, f"{case.id}: files differ from cases.json: {changed}"
        assert records[case.id]["refuse"] == sorted(case.refuse & case.outputs), case.id


def test_recipes_rebuild_the_corpus(tmp_path: Path) -> None:
    """The recipes still produce the checked-in bytes (bombs excepted: zlib-version bound)."""
    records = {r["id"]: r for r in json.loads((CORPUS / "cases.json").read_text())}
    for case in CASES.values():
        if case.generated or case.cls == "bomb":
            continue
        built = build_case(case, tmp_path / case.id)
        assert built == records[case.id]["files"], f"{case.id}: recipe output changed"


def _case(case_id: str) -> Case:
    return CASES[case_id]
