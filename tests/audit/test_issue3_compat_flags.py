"""Issue 3, point 10: the reference tool's global options keep working under their names.

occystrap 0.4.17's global options (research note occystrap-features.md, section 1.1) that
make sense here are accepted before the command with the same meaning: --verbose, --debug,
--os/--architecture/--variant, --username/--password (and their environment variables),
--insecure, --compression (OCCYSTRAP_COMPRESSION), -j/--parallel, --temp-dir, --retries,
-O/--output-format for info and check; --verify/--no-verify/--verify-full (the reference's
read-back, which this tool does while writing) are accepted and change nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.tools import run_occystrap
from occystrap.sample import build


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compat") / "sample.tar"
    build(str(path))
    return path


@pytest.mark.parametrize(
    "flags",
    [
        ["--verbose"],
        ["--debug"],
        ["--os", "linux", "--architecture", "amd64"],
        ["--os", "linux", "--architecture", "amd64", "--variant", ""],
        ["--username", "u", "--password", "p"],
        ["--insecure"],
        ["--compression", "zstd"],
        ["-j", "2"],
        ["--parallel", "3"],
        ["--retries", "1"],
        ["--verify"],
        ["--no-verify"],
        ["--verify-full"],
        ["-O", "json"],
        ["--output-format", "text"],
    ],
    ids=lambda f: " ".join(f) or "none",
)
def test_reference_global_options_are_accepted(
    flags: list[str], sample: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.tar"
    done = run_occystrap(
        *flags, "--temp-dir", str(tmp_path), "process", f"tar://{sample}", f"tar://{out}"
    )
    assert done.returncode == 0, done.stderr.decode()
    assert out.is_file()
    again = tmp_path / "plain.tar"
    assert run_occystrap("process", f"tar://{sample}", f"tar://{again}").returncode == 0
    assert out.read_bytes() == again.read_bytes(), "a compatibility flag changed the output"


def test_reference_environment_variables(sample: Path, tmp_path: Path) -> None:
    env = {
        "OCCYSTRAP_VERIFY": "false",
        "OCCYSTRAP_PARALLEL": "2",
        "OCCYSTRAP_RETRIES": "1",
        "OCCYSTRAP_TEMP_DIR": str(tmp_path),
        "OCCYSTRAP_COMPRESSION": "gzip",
    }
    done = run_occystrap("process", f"tar://{sample}", f"tar://{tmp_path / 'o.tar'}", env=env)
    assert done.returncode == 0, done.stderr.decode()
    bad = run_occystrap("process", f"tar://{sample}", f"tar://{tmp_path / 'x.tar'}",
                        env={"OCCYSTRAP_PARALLEL": "0"})  # fmt: skip
    assert bad.returncode == 2 and b"1<=x<=64" in bad.stderr


@pytest.mark.parametrize("command", ["info", "check"])
def test_output_format_json(command: str, sample: Path) -> None:
    plain = run_occystrap(command, f"tar://{sample}")
    assert plain.returncode == 0, plain.stderr.decode()
    with pytest.raises(json.JSONDecodeError):
        json.loads(plain.stdout)
    wanted = run_occystrap(command, "--json", f"tar://{sample}")
    for flags in (["-O", "json"], ["--output-format", "json"]):
        done = run_occystrap(*flags, command, f"tar://{sample}")
        assert done.returncode == 0, done.stderr.decode()
        assert json.loads(done.stdout) == json.loads(wanted.stdout)
    bad = run_occystrap("-O", "yaml", command, f"tar://{sample}")
    assert bad.returncode == 2 and b"text" in bad.stderr and b"json" in bad.stderr
