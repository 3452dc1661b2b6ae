"""The command line as a user meets it: help, ``python -m occystrap``, errors, the demo.

Expectations are derived from ``occystrap.transports.TRANSPORTS`` and
``occystrap.filters.catalog.FILTERS``, so a scheme, option or filter added without help (or
help that lists something that no longer exists) fails here. Usage errors must exit 2 and bad
input 1, each with exactly one line on stderr and no traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

from conformance import broken
from conformance.evidence import read_layout, skopeo_to_oci
from lab import images
from lab.tools import run_occystrap, umoci
from occystrap import __version__
from occystrap.filters.catalog import FILTERS
from occystrap.transports import TRANSPORTS

ROOT = Path(__file__).resolve().parents[2]
SCHEME_LINE = re.compile(r"^\s+([a-z][a-z0-9-]*)://\s+\[(in/out|in|out)\]")
FILTER_LINE = re.compile(r"^\s{2,4}([a-z][a-z0-9-]*): ")


def ok(*args: str | Path) -> str:
    done = run_occystrap(*args)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode()


def one_line_error(done: subprocess.CompletedProcess[bytes], status: int) -> str:
    """Assert exit ``status`` with one ``occystrap: error:`` line on stderr; return the line."""
    err = done.stderr.decode(errors="replace")
    assert done.returncode == status, f"exit {done.returncode}, expected {status}: {err}"
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.endswith("\n"), f"not one line: {err!r}"
    assert err.startswith("occystrap: error: "), err
    assert done.stdout == b"", done.stdout[:300]
    return err.strip()


# -- help ----------------------------------------------------------------------------------------


def _blocks(text: str) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """scheme -> (roles, its help lines); filter -> its help lines, as printed by --help."""
    schemes: dict[str, tuple[str, str]] = {}
    filters: dict[str, str] = {}
    current: tuple[str, str, str] | None = None  # (kind, name, roles)
    lines: list[str] = []

    def flush() -> None:
        if current is None:
            return
        kind, name, roles = current
        if kind == "scheme":
            schemes[name] = (roles, "\n".join(lines))
        else:
            filters[name] = "\n".join(lines)

    section = ""
    for line in text.splitlines():
        if line.strip().startswith(("Schemes (", "Filters (")):
            flush()
            current, lines, section = None, [], line.strip().split()[0]
            continue
        scheme = SCHEME_LINE.match(line) if section == "Schemes" else None
        flt = FILTER_LINE.match(line) if section == "Filters" else None
        if scheme or flt:
            flush()
            lines = [line]
            current = ("scheme", scheme[1], scheme[2]) if scheme else ("filter", flt[1], "")  # type: ignore[index]
        elif current is not None and line.strip():
            lines.append(line)
    flush()
    return schemes, filters


@pytest.mark.parametrize("args", [("--help",), ("process", "--help")], ids=["top", "process"])
def test_help_lists_every_scheme_option_and_filter(args: tuple[str, ...]) -> None:
    text = ok(*args)
    schemes, filters = _blocks(text)
    assert sorted(schemes) == sorted(t.scheme for t in TRANSPORTS), "schemes in help"
    for t in TRANSPORTS:
        roles, block = schemes[t.scheme]
        expected = "/".join(r for r, f in (("in", t.source_factory), ("out", t.sink_factory)) if f)
        assert roles == expected, f"{t.scheme}: [{roles}], expected [{expected}]"
        for alias in t.aliases:
            assert f"{alias}://" in block, f"{t.scheme}: alias {alias} missing"
        for role, cls, example in (
            ("source", t.options_class("source"), t.source_example),
            ("dest", t.options_class("sink"), t.sink_example),
        ):
            if cls is None:
                assert f"?{role} options" not in block
                continue
            names = [f.name for f in dataclasses.fields(cls)]
            line = next((x for x in block.splitlines() if f"?{role} options:" in x), "")
            for name in names:
                assert f" {name}= " in line, f"{t.scheme}: {role} option {name} missing"
            listed = re.findall(r"(?:: |; )([a-z_]+)= ", line)
            assert listed == names, f"{t.scheme}: {role} options listed {listed}"
            if example:
                assert example in block, f"{t.scheme}: example {example} missing"
    assert list(filters) == [f.name for f in FILTERS], "filters in help"
    for spec in FILTERS:
        block = filters[spec.name]
        listed = re.findall(r"^\s+([a-z_]+)= ", block, re.MULTILINE)
        assert listed == [f.name for f in dataclasses.fields(spec.options)], spec.name
        assert spec.example in block, f"{spec.name}: example missing"
    if args[0] == "process":
        assert "Examples:" in text and text.count("occystrap process ") >= 3
    else:
        for command in ("process", "search", "info", "check"):
            assert re.search(rf"^\s+{command}\s", text, re.MULTILINE), command


def test_python_dash_m_and_the_console_script_agree() -> None:
    version = ok("--version")
    assert __version__ in version
    script = Path(sys.executable).with_name("occystrap")
    done = subprocess.run([script, "process", "--help"], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == ok("process", "--help")


def test_stdout_carries_only_the_image(archive: Path, tmp_path: Path) -> None:
    """Progress, notices, the summary and -v logging go to stderr, never into ``tar://-``."""
    ok("process", f"tar://{archive}", f"tar://{tmp_path / 'file.tar'}")
    done = run_occystrap("-v", "process", "tar://-", "tar://-", input=archive.read_bytes())
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout == (tmp_path / "file.tar").read_bytes()
    assert done.stderr, "a run without --quiet says what it did"


# -- usage errors: exit 2, one line that says what is accepted -------------------------------------


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid docker-save tarball of busybox, for commands that must get past the source."""
    work = tmp_path_factory.mktemp("cli")
    layout = images.build_oci_layout(work / "layout", images.busybox_layers())
    return images.docker_save_legacy(layout, work / "busybox.tar", ["lab/busybox:latest"])


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


@pytest.mark.parametrize("role", ["source", "destination"])
def test_unknown_scheme_lists_every_scheme(role: str, archive: Path, out: Path) -> None:
    args = (
        ["nope://x", f"tar://{out}.tar"] if role == "source" else [f"tar://{archive}", "nope://x"]
    )
    line = one_line_error(run_occystrap("process", *args), 2)
    assert "'nope'" in line
    for t in TRANSPORTS:
        assert re.search(rf"\b{t.scheme}\b", line), f"{t.scheme} not listed: {line}"
    assert not out.with_suffix(".tar").exists()


def _uri_cases() -> list[Any]:
    cases = []
    for t in TRANSPORTS:
        for role, cls in (
            ("source", t.options_class("source")),
            ("destination", t.options_class("sink")),
        ):
            if cls is not None:
                cases.append(pytest.param(t.scheme, role, cls, id=f"{t.scheme}-{role}"))
    return cases


def _uri(scheme: str, query: str) -> str:
    target = {"registry": "127.0.0.1:9/lab/x:1", "docker": "lab/x:1"}.get(scheme, "/nonexistent/x")
    return f"{scheme}://{target}?{query}"


def _args(scheme: str, role: str, query: str, archive: Path, out: Path) -> list[str]:
    uri = _uri(scheme, query)
    return [uri, f"tar://{out}.tar"] if role == "source" else [f"tar://{archive}", uri]


@pytest.mark.parametrize(("scheme", "role", "cls"), _uri_cases())
def test_unknown_uri_option_lists_the_accepted_ones(
    scheme: str, role: str, cls: type[Any], archive: Path, out: Path
) -> None:
    line = one_line_error(
        run_occystrap("process", *_args(scheme, role, "bogus=1", archive, out)), 2
    )
    assert "'bogus'" in line
    accepted = line.rpartition("accepted:")[2]
    assert [x.strip(" )") for x in accepted.split(",")] == sorted(
        f.name for f in dataclasses.fields(cls)
    )


def _bad_values(cls: type[Any]) -> list[tuple[str, str, str]]:
    """(option, bad value, what the error must say is accepted) for every bool and int option."""
    out = []
    for name, kind in typing.get_type_hints(cls).items():
        args = set(typing.get_args(kind)) - {type(None)} or {kind}
        if args == {bool}:
            out.append((name, "maybe", "true or false"))
        elif args == {int}:
            out.append((name, "many", "integer"))
    return out


def _value_cases() -> list[Any]:
    cases = []
    for param in _uri_cases():
        scheme, role, cls = param.values
        for name, bad, says in _bad_values(cls):
            cases.append(pytest.param(scheme, role, name, bad, says, id=f"{scheme}-{role}-{name}"))
    return cases


@pytest.mark.parametrize(("scheme", "role", "name", "bad", "says"), _value_cases())
def test_bad_uri_option_value_says_what_is_accepted(
    scheme: str, role: str, name: str, bad: str, says: str, archive: Path, out: Path
) -> None:
    done = run_occystrap("process", *_args(scheme, role, f"{name}={bad}", archive, out))
    line = one_line_error(done, 2)
    assert name in line and repr(bad) in line and says in line, line


def test_unknown_filter_lists_every_filter(archive: Path, out: Path) -> None:
    done = run_occystrap("process", f"tar://{archive}", f"tar://{out}.tar", "-f", "nope")
    line = one_line_error(done, 2)
    for spec in FILTERS:
        assert spec.name in line, line
    assert not out.with_suffix(".tar").exists()


@pytest.mark.parametrize("spec", FILTERS, ids=[s.name for s in FILTERS])
def test_filter_options_are_checked(spec: Any, archive: Path, out: Path) -> None:
    dest = f"tar://{out}.tar"
    done = run_occystrap("process", f"tar://{archive}", dest, "-f", f"{spec.name}:bogus=1")
    line = one_line_error(done, 2)
    accepted = line.rpartition("accepted:")[2]
    names = sorted(f.name for f in dataclasses.fields(spec.options))
    assert [x.strip(" )") for x in accepted.split(",")] == names, line
    for name, bad, says in _bad_values(spec.options):
        done = run_occystrap("process", f"tar://{archive}", dest, "-f", f"{spec.name}:{name}={bad}")
        line = one_line_error(done, 2)
        assert name in line and says in line, line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--compression", "lzma"], ["gzip", "zstd", "none"]),
        (["--parallel", "0"], ["1<=x<=64"]),
        (["--platform", "linux"], ["os/arch"]),
        (["--no-such-flag"], ["--no-such-flag"]),
        (["--temp-dir", "/no/such/dir"], ["--temp-dir", "does not exist"]),
    ],
    ids=["compression", "parallel", "platform", "unknown-flag", "missing-temp-dir"],
)
def test_bad_flags(args: list[str], says: list[str], archive: Path, out: Path) -> None:
    line = one_line_error(
        run_occystrap(*args, "process", f"tar://{archive}", f"tar://{out}.tar"), 2
    )
    for word in says:
        assert word in line, line


def test_the_library_is_silent_without_logging_config(archive: Path, tmp_path: Path) -> None:
    """A warning inside the library must not reach stderr through Python's last-resort
    handler when the embedding program configured no logging."""
    code = (
        "import logging, occystrap, sys\n"
        "logging.getLogger('occystrap.copy').warning('would be printed without a handler')\n"
        f"occystrap.process('tar://{archive}', 'tar://{tmp_path}/o.tar')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == (b"", b"")
    assert (tmp_path / "o.tar").is_file()


def test_sink_only_scheme_as_source(out: Path) -> None:
    for t in TRANSPORTS:
        if t.source_options is None:
            line = one_line_error(
                run_occystrap("process", f"{t.scheme}://x", f"tar://{out}.tar"), 2
            )
            assert "destination" in line, line


# -- bad input: exit 1, one line; a traceback only with --debug ------------------------------------


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory, archive: Path) -> dict[str, str]:
    work = tmp_path_factory.mktemp("bad-inputs")
    layout = images.build_oci_layout(work / "layout", images.busybox_layers())
    return broken.bad_inputs(work, archive, layout)


def _bad_input_cells() -> list[Any]:
    """Every case into a tarball; the cases that fail mid-write also into ocidir:// and dir://."""
    cells = [pytest.param(case, "tar", id=f"{case}-tar") for case in broken.BAD_INPUTS]
    cells += [
        pytest.param(case, dest, id=f"{case}-{dest}")
        for case in broken.BAD_INPUTS
        if case.startswith(("digest", "truncated"))
        for dest in ("ocidir", "dir")
    ]
    return cells


@pytest.mark.parametrize(("case", "dest"), _bad_input_cells())
def test_bad_input_is_one_line_exit_1(
    case: str, dest: str, bad_inputs: dict[str, str], out: Path
) -> None:
    target = {"tar": f"tar://{out}.tar", "ocidir": f"ocidir://{out}:v1", "dir": f"dir://{out}"}[
        dest
    ]
    line = one_line_error(run_occystrap("process", bad_inputs[case], target), 1)
    assert len(line) < 500, line
    assert not out.with_suffix(".tar").exists(), "a tarball was left behind"
    assert not (out / "index.json").exists() and not (out / "manifest.json").exists()
    if dest != "tar":
        return
    debug = run_occystrap("--debug", "process", bad_inputs[case], target)
    err = debug.stderr.decode(errors="replace")
    assert debug.returncode == 1, err
    assert "Traceback (most recent call last)" in err, err
    assert err.rstrip("\n").splitlines()[-1] == line, "--debug must end with the same line"


# -- the demo ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_runs_green(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh"), str(out)],
        cwd=ROOT,
        capture_output=True,
        timeout=600,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
    )
    log = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, log[-4000:]
    assert "Traceback" not in log, log[-4000:]
    for name in ("sample.tar", "normalized.tar", "layers.jsonl", "layout/index.json", "dir/rootfs"):
        assert (out / name).exists(), f"demo did not write {name}"
    assert json.loads((out / "layers.jsonl").read_text().splitlines()[0])["layers"]
    got = skopeo_to_oci(f"docker-archive:{out / 'normalized.tar'}", tmp_path / "check")
    assert got.diff_ids
    (entry,) = json.loads((out / "layout" / "index.json").read_text())["manifests"]
    ref = entry["annotations"]["org.opencontainers.image.ref.name"]
    assert read_layout(out / "layout", ref).diff_ids
    umoci("stat", "--image", f"{out / 'layout'}:{ref}")
