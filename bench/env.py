"""The benchmark's surroundings: the reference tool's venv, the registries, the machine.

* ``ensure_ref_venv``: occystrap 0.4.17 from PyPI in ``bench/work/ref-venv`` (created once);
* ``compile_ours``: our bytecode compiled, as pip compiles an installed package's;
* ``start_registries``: two fresh plain-HTTP ``docker-registry`` instances on 127.0.0.1
  (tests/lab/registry.py), the corpus pushed to the first with skopeo;
* ``machine``: what the results depend on (CPU, memory, kernel, Python, libraries, tools);
* ``page_reporting``: whether the guest hands freed memory back to its host (see
  :data:`bench.runner.SETTLE`).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.lab.registry import Registry, start_registry

from .corpus import REPO_TAG, Corpus

REF_VERSION = "0.4.17"
ROOT = Path(__file__).resolve().parent.parent
#: the project's interpreter, which runs ours
PYTHON = ROOT / ".venv" / "bin" / "python"
LIBRARIES = ("isal", "zlib-ng", "zstandard", "httpx", "click")


def compile_ours(src: Path = ROOT / "src") -> None:
    """Compile the bytecode of our modules under ``src``, as pip does for an installed
    package (and did for occystrap 0.4.17). Ours is an editable install of ``src/``: its
    bytecode is written on first import, unless the environment sets
    ``PYTHONDONTWRITEBYTECODE``, and then every run would compile every module again
    (about 50 ms)."""
    subprocess.run([str(PYTHON), "-m", "compileall", "-q", str(src)], check=True)


def ensure_ref_venv(work: Path) -> str:
    """Path of the ``occystrap`` 0.4.17 executable, installing it on first use."""
    venv = work / "ref-venv"
    exe = venv / "bin" / "occystrap"
    marker = venv / f".occystrap-{REF_VERSION}"
    if exe.exists() and marker.exists():
        return str(exe)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    subprocess.run([*pip, f"occystrap=={REF_VERSION}"], check=True)
    marker.touch()
    return str(exe)


def tool_path(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / name).exists()), None
    )
    if found is None:
        raise SystemExit(f"bench: {name} is not installed (run scripts/install-system-deps.sh)")
    return found


def start_registries(work: Path, corpus: Corpus, tls: bool = False) -> list[Registry]:
    """Two fresh registries, plain HTTP or (``tls``) HTTPS with a CA of their own each; the
    corpus (OCI layout, gzip) pushed to the first."""
    regs: list[Registry] = []
    try:
        for i in (1, 2):
            shutil.rmtree(work / f"registry-{i}", ignore_errors=True)
            regs.append(start_registry("tls" if tls else "plain", work / f"registry-{i}"))
        subprocess.run(
            [
                tool_path("skopeo"),
                "--insecure-policy",
                "copy",
                "-q",
                "--dest-tls-verify=false",
                f"oci:{corpus.layout}:latest",
                f"docker://{regs[0].host}/{REPO_TAG}",
            ],
            check=True,
        )
    except BaseException:
        for reg in regs:
            reg.stop()
        raise
    return regs


#: the virtio balloon's feature bits; bit 5 is VIRTIO_BALLOON_F_REPORTING (free page reporting)
BALLOON_FEATURES = Path("/sys/bus/virtio/drivers/virtio_balloon")
REPORTING_BIT = 5


def page_reporting(driver: Path = BALLOON_FEATURES) -> bool:
    """Whether this machine is a VM whose balloon reports free pages to the host. The host
    then takes those pages back, and the next write into them faults them in again."""
    for features in driver.glob("*/features"):
        try:
            bits = features.read_text().strip()
        except OSError:
            continue
        if len(bits) > REPORTING_BIT and bits[REPORTING_BIT] == "1":
            return True
    return False


def _first_line(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except OSError as err:
        return f"unavailable ({err})"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else f"exit status {done.returncode}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _lib_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def startup_seconds(cmd: list[str], runs: int = 3) -> float:
    """Median wall time of a trivial command (a tool's fixed start-up cost)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine(ours: str, ref: str) -> dict[str, str]:
    """The facts a reader needs to compare two result tables."""
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{os.cpu_count()} × {_cpu_model()}",
        "memory": _memory(),
        "kernel": f"{platform.system()} {platform.release()}",
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "libraries": ", ".join(f"{n} {_lib_version(n)}" for n in LIBRARIES),
        "ours": _first_line([ours, "--version"]),
        "ref": f"occystrap {REF_VERSION} (PyPI, in {os.path.relpath(ref, ROOT)})",
        "skopeo": _first_line([tool_path("skopeo"), "--version"]),
        "registry": _first_line([tool_path("docker-registry"), "--version"]),
        "load": load(),
        "page_reporting": "on" if page_reporting() else "off",
        "startup": ", ".join(
            f"{name} {startup_seconds(cmd):.2f} s"
            for name, cmd in (
                ("ours", [ours, "--version"]),
                ("occystrap", [ref, "--help"]),
                ("skopeo", [tool_path("skopeo"), "--version"]),
            )
        ),
    }


def load() -> str:
    """The 1/5/15-minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
