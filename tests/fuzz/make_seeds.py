"""Write the fuzz seed corpus under ``tests/fuzz/corpus/`` (run after changing a seed).

    .venv/bin/python -m tests.fuzz.make_seeds

Tar seeds come from GNU tar (every format it writes, sparse members included) and Python's
tarfile; document seeds are small real-world shaped manifests, indexes, configs,
descriptors and ``manifest.json`` files; text seeds are one URI or filter per line. Files
under ``corpus/regressions/`` are inputs that once broke a parser: they are kept by hand.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"
D = "sha256:" + "a" * 64
E = "sha256:" + "b" * 64
OCI = "application/vnd.oci.image."
DOCKER = "application/vnd.docker."


def _dump(obj: object) -> bytes:
    return json.dumps(obj, indent=1, sort_keys=True).encode() + b"\n"


def _trim(data: bytes) -> bytes:
    end = len(data.rstrip(b"\0"))
    end += -end % 512
    return data[:end] + bytes(1024)


def _tree(root: Path) -> None:
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "file.txt").write_text("hello\n")
    (root / "dir" / ("long-" + "n" * 120 + ".txt")).write_text("long name\n")
    (root / "dir" / "sub" / "ünïcode.txt").write_text("utf-8\n")
    os.symlink("file.txt", root / "dir" / "link")
    os.symlink("x" * 150, root / "dir" / "longlink")
    os.link(root / "dir" / "file.txt", root / "dir" / "hard")
    with open(root / "dir" / "sparse.bin", "wb") as f:
        f.truncate(20000)
        f.seek(9000)
        f.write(b"data in the middle")


def gnu_tar_seeds(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _tree(root)
        flavours = {
            "gnu": ["--format=gnu"],
            "gnu-sparse": ["--format=gnu", "--sparse"],
            "posix": ["--format=posix", "--pax-option=delete=atime,delete=ctime"],
            "posix-sparse-0.0": ["--format=posix", "--sparse", "--sparse-version=0.0"],
            "posix-sparse-0.1": ["--format=posix", "--sparse", "--sparse-version=0.1"],
            "posix-sparse-1.0": ["--format=posix", "--sparse", "--sparse-version=1.0"],
            "ustar": ["--format=ustar", "--exclude=dir/long*"],
            "v7": ["--format=v7", "--exclude=dir/long*", "--exclude=dir/sub"],
        }
        for name, flags in flavours.items():
            cmd = ["tar", *flags, "--mtime=@1700000000", "--owner=0", "--group=0", "--sort=name"]
            data = subprocess.run(
                [*cmd, "-cf", "-", "-C", tmp, "dir"], check=True, capture_output=True
            ).stdout
            (out / f"{name}.tar").write_bytes(_trim(data))


def python_tar_seeds(out: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "global"}
    ) as tf:
        info = tarfile.TarInfo("x/file")
        info.size, info.uid, info.mtime = 3, 3_000_000_000, 1.5
        info.pax_headers = {"SCHILY.xattr.user.k": "v"}
        tf.addfile(info, io.BytesIO(b"abc"))
        dev = tarfile.TarInfo("x/dev")
        dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 1, 3
        tf.addfile(dev)
        fifo = tarfile.TarInfo("x/fifo")
        fifo.type = tarfile.FIFOTYPE
        tf.addfile(fifo)
        wh = tarfile.TarInfo("x/.wh..wh..opq")
        tf.addfile(wh)
    (out / "pax-global.tar").write_bytes(_trim(buf.getvalue()))


def document_seeds() -> dict[str, dict[str, bytes]]:
    layer = {"mediaType": OCI + "layer.v1.tar+gzip", "digest": D, "size": 32}
    config = {"mediaType": OCI + "config.v1+json", "digest": E, "size": 7}
    platform = {"architecture": "arm64", "os": "linux", "variant": "v8", "os.features": ["x"]}
    manifest = {"schemaVersion": 2, "mediaType": OCI + "manifest.v1+json", "config": config,
                "layers": [layer, {**layer, "urls": ["https://x/y"], "annotations": {"a": "b"}}],
                "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}}  # fmt: skip
    index = {"schemaVersion": 2, "mediaType": OCI + "index.v1+json",
             "manifests": [{"mediaType": OCI + "manifest.v1+json", "digest": D, "size": 5,
                            "platform": platform}]}  # fmt: skip
    return {
        "manifest": {
            "oci-manifest.json": _dump(manifest),
            "docker-manifest.json": _dump(
                {**manifest, "mediaType": DOCKER + "distribution.manifest.v2+json"}
            ),
            "no-media-type.json": _dump({k: v for k, v in manifest.items() if k != "mediaType"}),
            "subject.json": _dump(
                {**manifest, "subject": {**config, "mediaType": OCI + "manifest.v1+json"}}
            ),
            "oci-index.json": _dump(index),
            "docker-list.json": _dump(
                {**index, "mediaType": DOCKER + "distribution.manifest.list.v2+json"}
            ),
            "schema1.json": _dump({"schemaVersion": 1, "name": "a", "tag": "b", "fsLayers": []}),
        },  # fmt: skip
        "config": {
            "config.json": _dump(
                {
                    "created": "2024-01-01T00:00:00Z",
                    "architecture": "amd64",
                    "os": "linux",
                    "config": {"Env": ["A=b"], "Cmd": ["/bin/sh"], "User": "1000:1000"},
                    "rootfs": {"type": "layers", "diff_ids": [D, E]},
                    "history": [{"created_by": "a"}, {"empty_layer": True}, {"created_by": "b"}],
                }
            ),
            "minimal.json": _dump({"architecture": "arm", "os": "linux", "variant": "v7"}),
        },  # fmt: skip
        "descriptor": {
            "layer.json": _dump(layer),
            "platform.json": _dump(
                {**layer, "platform": platform, "artifactType": "x/y", "data": "e30="}
            ),
        },  # fmt: skip
        "manifest_json": {
            "legacy.json": _dump(
                [{"Config": "c.json", "RepoTags": ["a/b:1"], "Layers": ["1/layer.tar"]}]
            ),
            "oci-save.json": _dump(
                [
                    {
                        "Config": "blobs/sha256/" + "a" * 64,
                        "RepoTags": None,
                        "Layers": ["blobs/sha256/" + "b" * 64],
                        "LayerSources": {D: layer},
                    }
                ]
            ),
            "multi.json": _dump(
                [
                    {"Config": "c.json", "RepoTags": ["x:1", "y:2"], "Layers": []},
                    {"Config": "d.json", "RepoTags": [], "Layers": ["a/layer.tar"]},
                ]
            ),
        },  # fmt: skip
    }


URIS = """tar://image.tar
tar://-
tar://img.tar?image=busybox:latest
file:///tmp/x.tar?index=1
docker-archive:out.tar?tag=a/b:1&tag=c:2
ocidir://./layout:v1
ocidir://layout?platform=linux/arm64/v8&index=0
oci-layout://dir:ref?ref=x
dir://store?unique_names=true&expand=true
directory://x?expand=1
oci://bundle?rootless=true
bundle://b
registry://docker.io/library/busybox:latest
registry://127.0.0.1:5000/team/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa?insecure=true
registry://[::1]:5000/a/b:c?tls_verify=false&compression=zstd&level=3
docker://busybox:latest?socket=/run/podman/podman.sock
docker://team/app:v1
"""
FILTERS = """normalize-timestamps
normalize-timestamps:ts=0
normalize_timestamps:timestamp=1700000000
exclude:pattern=**/*.pyc,pattern=var/cache/**
exclude:pattern=*.pyc,*.pyo
search:pattern=*.conf
search:pattern=^etc/.*\\.conf$,regex=true,json=true
search:pattern=x,script_friendly=yes
inspect:file=layers.jsonl
"""


def main() -> None:
    if CORPUS.exists():
        for child in CORPUS.iterdir():
            if child.name != "regressions":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    tar_dir = CORPUS / "tar"
    tar_dir.mkdir(parents=True)
    gnu_tar_seeds(tar_dir)
    python_tar_seeds(tar_dir)
    for kind, files in document_seeds().items():
        (CORPUS / kind).mkdir()
        for name, data in files.items():
            (CORPUS / kind / name).write_bytes(data)
    (CORPUS / "uri").mkdir()
    (CORPUS / "uri" / "uris.txt").write_text(URIS)
    (CORPUS / "filter").mkdir()
    (CORPUS / "filter" / "filters.txt").write_text(FILTERS)


if __name__ == "__main__":
    main()
