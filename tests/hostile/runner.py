"""Run hostile cases through the CLI into each output and judge what happened.

One run is ``python -m occystrap -q --temp-dir TMP process SOURCE DEST`` (forked from a
server that imported occystrap once, see :mod:`forkserver`) in its own work directory ``W`` (the current directory of the child) holding ``out/`` (where DEST points)
and ``tmp/`` (``--temp-dir``). Afterwards ``W`` must hold nothing else and ``tmp/`` must be
empty, whatever the outcome. Runs go four at a time; each is independent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .build import file_hashes
from .cases import CORPUS, Case, all_cases
from .forkserver import ForkServer, Result

OUTPUT_URIS = {
    "tar": "tar://{out}/image.tar",
    "ocidir": "ocidir://{out}/layout:copy",
    "ocidir+filter": "ocidir://{out}/layout:copy",
    "dir": "dir://{out}/store",
    "dir-expand": "dir://{out}/store?expand=true",
    "bundle": "oci://{out}/bundle",
}
FILTER_ARGS = {"ocidir+filter": ("-f", "exclude:pattern=no/such/file")}
ERROR_PREFIX = "occystrap: error: "


@dataclass(frozen=True)
class Run:
    case: Case
    output: str
    returncode: int
    stdout: str
    stderr: str
    workdir: Path
    leftovers: tuple[str, ...]  # unexpected names in the work dir or its tmp/
    complete: bool  # the output looks like a finished image
    debris: tuple[str, ...]  # partial output a failed run left behind


def case_dir(case: Case, generated_root: Path) -> Path:
    return generated_root / case.id if case.generated else CORPUS / case.id


def run_one(
    case: Case, output: str, source_root: Path, work_root: Path, server: ForkServer | None = None
) -> Run:
    work = work_root / case.id / output
    if work.exists():
        shutil.rmtree(work)
    (work / "out").mkdir(parents=True)
    (work / "tmp").mkdir()
    out = work / "out"
    source = case.source.format(case=source_root)
    dest = OUTPUT_URIS[output].format(out=out)
    args = ["-q", "--temp-dir", str(work / "tmp"), *case.args]
    args += ["process", source, dest, *FILTER_ARGS.get(output, ())]
    stdin = source_root / case.stdin if case.stdin else None
    if server is not None:
        done = server.run(args, work, stdin, timeout=300)
    else:
        with open(stdin or os.devnull, "rb") as f:
            ran = subprocess.run(
                [sys.executable, "-m", "occystrap", *args],
                cwd=work,
                stdin=f,
                capture_output=True,
                timeout=300,
                check=False,
            )
        done = Result(ran.returncode, ran.stdout, ran.stderr)
    leftovers = sorted(set(os.listdir(work)) - {"out", "tmp"})
    leftovers += [f"tmp/{n}" for n in sorted(os.listdir(work / "tmp"))]
    return Run(
        case,
        output,
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
        work,
        tuple(leftovers),
        is_complete(output, out),
        tuple(debris(output, out)),
    )


def is_complete(output: str, out: Path) -> bool:
    if output == "tar":
        return (out / "image.tar").is_file()
    if output.startswith("ocidir"):
        index = out / "layout" / "index.json"
        if not index.is_file():
            return False
        entries = json.loads(index.read_bytes()).get("manifests", [])
        return any((e.get("annotations") or {}).get(REF) == "copy" for e in entries)
    if output.startswith("dir"):
        store = out / "store"
        done = (store / "manifest.json").is_file()
        return done and (output == "dir" or (store / "rootfs").is_dir())
    return (out / "bundle" / "config.json").is_file()


REF = "org.opencontainers.image.ref.name"


def debris(output: str, out: Path) -> list[str]:
    """What a refused run must not leave: anything naming an image, temporary work, a bundle.

    Verified blobs and layer files in a shared store are allowed to stay (they are content
    addressed and nothing refers to them), as the sinks document.
    """
    found = []
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        name = path.name
        if output == "tar" or output == "bundle":
            found.append(rel)  # nothing at all may remain
        elif output.startswith("ocidir"):
            if name == "index.json" and json.loads(path.read_bytes()).get("manifests"):
                found.append(rel)
            elif ".tmp" in name or name.startswith(".tmp"):
                found.append(rel)
        elif name.startswith(("manifest", "rootfs", ".tmp")) or (
            name == "catalog.json" and json.loads(path.read_bytes()).get("images")
        ):
            found.append(rel)
    return [f for f in found if not any(f.startswith(d + "/") for d in found)]


def run_all(
    wanted: Iterable[tuple[str, str]], outputs: Iterable[str], generated_root: Path, work_root: Path
) -> dict[tuple[str, str], Run]:
    """Run the (case id, output) pairs of ``wanted`` whose output is in ``outputs``."""
    by_id = {c.id: c for c in all_cases()}
    allowed = set(outputs)
    jobs = [(by_id[i], o) for i, o in sorted(wanted) if o in allowed and o in by_id[i].outputs]
    server = ForkServer()  # real processes, without paying interpreter start-up each time
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {
                (c.id, o): pool.submit(
                    run_one, c, o, case_dir(c, generated_root), work_root, server
                )
                for c, o in jobs
            }
            return {key: f.result() for key, f in futures.items()}
    finally:
        server.close()


def problems(run: Run) -> list[str]:
    """Everything wrong with ``run`` given what its case expects of its output."""
    bad = []
    lines = run.stderr.splitlines()
    if "Traceback" in run.stderr or "Traceback" in run.stdout:
        bad.append("a traceback was printed")
    if run.leftovers:
        bad.append(f"files outside the target: {', '.join(run.leftovers)}")
    if run.case.expect(run.output) == "refuse":
        if run.returncode == 0:
            bad.append("exit status 0")
        if len(lines) != 1 or not lines[0].startswith(ERROR_PREFIX):
            bad.append(f"stderr is not one '{ERROR_PREFIX}' line: {lines[:5]!r}")
        elif lines[0].startswith(ERROR_PREFIX + "internal error"):
            bad.append(f"internal error: {lines[0]}")
        elif run.case.error and not re.search(run.case.error, lines[0], re.I):
            bad.append(f"error does not match {run.case.error!r}: {lines[0]}")
        if run.complete:
            bad.append("a complete-looking output was left")
        if run.debris:
            bad.append(f"partial output left: {', '.join(run.debris[:5])}")
        if run.case.early and any((run.workdir / "out").iterdir()):
            bad.append("refused at source open, yet the output was started")
    else:
        if run.returncode != 0:
            bad.append(f"exit status {run.returncode}: {lines[-1:]!r}")
        if any(line.startswith(ERROR_PREFIX) for line in lines):
            bad.append(f"an error was printed: {lines[-1]}")
        if not run.complete:
            bad.append("the output is not complete")
    return bad


def verify_corpus_files(case: Case, recorded: dict[str, str]) -> list[str]:
    """Differences between the case's checked-in files and the hashes in cases.json."""
    actual = file_hashes(CORPUS / case.id)
    return sorted(k for k in actual.keys() | recorded.keys() if actual.get(k) != recorded.get(k))
