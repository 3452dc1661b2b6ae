"""Write the hostile corpus: ``corpus/<id>/`` per case and ``corpus/cases.json``.

Run from the repository root after changing a recipe::

    .venv/bin/python -m tests.hostile.build           # every case that is checked in
    .venv/bin/python -m tests.hostile.build ID...      # only these

``cases.json`` records every case (generated ones included) with the sha256 of each file,
so the suite notices a corpus that no longer matches its recipes or was damaged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from hostile.cases import CORPUS, Case, all_cases  # noqa: E402


def file_hashes(root: Path) -> dict[str, str]:
    """``relative path -> sha256`` of every regular file under ``root`` (symlinks as text)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = "symlink:" + os.readlink(path)
                continue
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            out[rel] = h.hexdigest()
    return out


def build_case(case: Case, root: Path) -> dict[str, str]:
    """Build ``case`` into the fresh directory ``root``; return its file hashes."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    case.build(root)
    return file_hashes(root)


def main(argv: list[str]) -> int:
    cases = all_cases()
    wanted = set(argv) or {c.id for c in cases}
    unknown = wanted - {c.id for c in cases}
    if unknown:
        print(f"unknown cases: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    index_path = CORPUS / "cases.json"
    old = {c["id"]: c for c in json.loads(index_path.read_text())} if index_path.exists() else {}
    records = []
    for case in cases:
        record = case.to_json()
        if case.generated:
            record["files"] = {}
        elif case.id in wanted:
            record["files"] = build_case(case, CORPUS / case.id)
            print(f"built {case.id}", file=sys.stderr)
        else:
            record["files"] = old.get(case.id, {}).get("files", {})
        records.append(record)
    keep = {c.id for c in cases if not c.generated}
    for stale in CORPUS.iterdir():
        if stale.is_dir() and stale.name not in keep:
            shutil.rmtree(stale)
    index_path.write_text(json.dumps(records, indent=1, ensure_ascii=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
