"""The round-trip matrix: every input x every output x {edge-case image, busybox}.

Inputs: docker-save tarballs of every era (Docker 1.10-24, Docker 25+, podman/skopeo,
containerd store with gzip blobs), a gzip-wrapped Docker 25+ tarball on standard input, an
OCI layout (gzip, zstd, and through ``-f exclude``), a registry and a podman daemon (see
``sources``). Outputs: tarball (file and standard output), OCI layout, dir:// (plain,
unique_names, expand), OCI runtime bundle, registry, daemon. Each output is judged by tools
that share no code with occystrap (see ``judges``); an expanded tree must equal
``umoci unpack`` of the same image file by file.

Cells run in-process through ``occystrap.api`` (which the CLI itself calls), except the
standard input/output ones, which run the real command. ``test_judges_catch_broken_outputs``
shows that each judge fails on a damaged output. A transport listed in
``occystrap.transports.TRANSPORTS`` whose module is not there yet is skipped (failed in CI).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.evidence import read_layout
from conformance.judges import Judges, require_module
from conformance.sources import Source, World
from lab.tools import run_occystrap
from occystrap import api
from occystrap.transports import TRANSPORTS
from occystrap.transports.base import Transport

IMAGES = ("edge", "busybox")
#: input -> the URI scheme it exercises
INPUTS = {
    "tar-legacy": "tar",
    "tar-docker25": "tar",
    "tar-podman": "tar",
    "tar-containerd": "tar",
    "tar-stdin": "tar",
    "ocidir": "ocidir",
    "ocidir-zstd": "ocidir",
    "ocidir-filtered": "ocidir",
    "registry": "registry",
    "docker": "docker",
}
#: output -> the URI scheme it exercises
OUTPUTS = {
    "tar": "tar",
    "tar-stdout": "tar",
    "ocidir": "ocidir",
    "dir": "dir",
    "dir-unique": "dir",
    "dir-expand": "dir",
    "bundle": "oci",
    "registry": "registry",
    "docker": "docker",
}


def _transport(scheme: str) -> Transport:
    return next(t for t in TRANSPORTS if t.scheme == scheme)


@pytest.fixture(scope="module")
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    w = World(request, tmp_path_factory.mktemp("conformance"))
    yield w
    print(f"\nconformance judges: {w.judges.runs} full judge runs")


# -- running one cell ----------------------------------------------------------------------------


def process(src: Source, dest: str, stdout: Path | None = None) -> None:
    """Run the pipeline: the CLI for standard input/output, the library otherwise."""
    if src.stdin is None and stdout is None:
        api.process(src.uri, dest, src.filters)
        return
    data = src.stdin.read_bytes() if src.stdin else None
    filters = [arg for f in src.filters for arg in ("-f", f)]
    done = run_occystrap("--quiet", "process", src.uri, dest, *filters, input=data)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    if stdout is not None:
        stdout.write_bytes(done.stdout)
    else:
        assert done.stdout == b"", "nothing but the image may go to standard output"


def test_matrix_covers_every_transport() -> None:
    """A transport added to TRANSPORTS must get its rows here."""
    assert set(INPUTS.values()) == {t.scheme for t in TRANSPORTS if t.source_options}
    assert set(OUTPUTS.values()) == {t.scheme for t in TRANSPORTS if t.sink_options}


@pytest.mark.parametrize("output", list(OUTPUTS))
@pytest.mark.parametrize("input_", list(INPUTS))
@pytest.mark.parametrize("image", IMAGES)
def test_round_trip(world: World, image: str, input_: str, output: str, tmp_path: Path) -> None:
    require_module(_transport(INPUTS[input_]).source_factory, f"input {input_}")
    require_module(_transport(OUTPUTS[output]).sink_factory, f"output {output}")
    src = world.source(image, input_)
    expect, judges, cell = src.expect, world.judges, f"{image}-{input_}"
    if output in ("tar", "tar-stdout"):
        out = tmp_path / "out.tar"
        if output == "tar":
            process(src, f"tar://{out}")
        else:
            process(src, "tar://-", stdout=out)
        again = tmp_path / "again.tar"
        api.process(src.file_uri, f"tar://{again}", src.filters)
        assert out.read_bytes() == again.read_bytes(), "the same input gave different bytes"
        judges.tarball(out, expect)
    elif output == "ocidir":
        out = tmp_path / "layout"
        process(src, f"ocidir://{out}:v1")
        judges.ocidir(out, "v1", expect)
    elif output in ("dir", "dir-unique"):
        out = tmp_path / "store"
        process(src, f"dir://{out}" + ("?unique_names=true" if output == "dir-unique" else ""))
        judges.directory(out, expect)
        assert not (out / "rootfs").exists()
    elif output == "dir-expand":
        out = tmp_path / "expanded"
        process(src, f"dir://{out}?expand=true")
        (entry,) = judges.directory(out, expect)
        judges.rootfs(out / entry.get("rootfs", "rootfs"), world.reference(src))
    elif output == "bundle":
        out = tmp_path / "bundle"
        process(src, f"oci://{out}")
        judges.bundle(out, world.reference(src))
    elif output == "registry":
        reg, repo = world.registry, f"conformance/{cell}"
        process(src, f"registry://{reg.host}/{repo}:v1?insecure=true")
        judges.registry(reg, repo, "v1", expect)
    elif output == "docker":
        daemon, name = world.podman, f"conformance/{cell}:v1"
        process(src, f"docker://{name}?socket={daemon.socket}")
        judges.daemon(daemon, name, expect)
    else:
        raise AssertionError(output)


# -- the judges can fail -------------------------------------------------------------------------


def _flip_member(archive: Path, suffix: str) -> None:
    """Flip one byte in the middle of the first member named ``*suffix`` (rewrites the tar)."""
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    with tarfile.open(archive) as tar:
        for member in tar:
            body = tar.extractfile(member) if member.isfile() else None
            members.append((member, body.read() if body else None))
    done = False
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for member, data in members:
            if data is not None and member.name.endswith(suffix) and not done:
                spoiled = bytearray(data)
                spoiled[len(spoiled) // 2] ^= 0xFF
                data, done = bytes(spoiled), True
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    assert done, f"no member *{suffix} in {archive}"


def _flip_file(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["tar", "ocidir", "dir", "rootfs"])
def test_judges_catch_broken_outputs(world: World, kind: str, tmp_path: Path) -> None:
    src = world.source("busybox", "tar-legacy")
    judges = Judges(tmp_path, lambda: world.podman)  # a fresh cache
    if kind == "tar":
        out = tmp_path / "out.tar"
        api.process(src.uri, f"tar://{out}")
        _flip_member(out, "layer.tar")
        with pytest.raises(AssertionError, match="layer.tar hashes"):
            judges.tarball(out, src.expect)
    elif kind == "ocidir":
        out = tmp_path / "layout"
        api.process(src.uri, f"ocidir://{out}:v1")
        layer = read_layout(out, "v1").layer_digests[0]
        _flip_file(out / "blobs" / "sha256" / layer[7:])
        with pytest.raises(AssertionError, match="skopeo"):
            judges.ocidir(out, "v1", src.expect)
    elif kind == "dir":
        out = tmp_path / "store"
        api.process(src.uri, f"dir://{out}")
        _flip_file(next(out.glob("*/layer.tar")))
        with pytest.raises(AssertionError, match="layer files hash"):
            judges.directory(out, src.expect)
    else:
        out = tmp_path / "expanded"
        api.process(src.uri, f"dir://{out}?expand=true")
        (out / "rootfs" / "etc" / "passwd").chmod(0o600)
        with pytest.raises(AssertionError, match="etc/passwd: mode"):
            judges.rootfs(out / "rootfs", world.reference(src))
