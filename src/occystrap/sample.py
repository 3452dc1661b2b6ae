"""A small built-in sample image (docker-save tarball), made without network or daemon.

``python -m occystrap.sample OUT.tar`` writes it. Two layers: a tiny root filesystem,
then a layer that deletes a file (whiteout), replaces a directory (opaque) and adds a
hardlink, so every rule of layer application shows up in the demo.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from collections.abc import Iterable

_MTIME = 1_700_000_000

# (name, type, content or link target, mode)
_BASE: list[tuple[str, bytes, str | bytes, int]] = [
    ("bin/", tarfile.DIRTYPE, "", 0o755),
    (
        "bin/hello",
        tarfile.REGTYPE,
        b"#!/bin/sh\necho 'Hello from the occystrap sample image'\n",
        0o755,
    ),
    ("etc/", tarfile.DIRTYPE, "", 0o755),
    ("etc/os-release", tarfile.REGTYPE, b"NAME=occystrap-sample\nID=sample\n", 0o644),
    ("etc/motd", tarfile.REGTYPE, b"this file is deleted by the second layer\n", 0o644),
    ("etc/conf.d/", tarfile.DIRTYPE, "", 0o755),
    ("etc/conf.d/old.conf", tarfile.REGTYPE, b"old=1\n", 0o644),
    ("usr/", tarfile.DIRTYPE, "", 0o755),
    ("usr/share/", tarfile.DIRTYPE, "", 0o755),
    ("usr/share/doc.txt", tarfile.REGTYPE, b"documentation\n" * 64, 0o644),
    ("usr/bin", tarfile.SYMTYPE, "../bin", 0o777),
]
_TOP: list[tuple[str, bytes, str | bytes, int]] = [
    ("etc/", tarfile.DIRTYPE, "", 0o755),
    ("etc/.wh.motd", tarfile.REGTYPE, b"", 0o644),
    ("etc/conf.d/", tarfile.DIRTYPE, "", 0o755),
    ("etc/conf.d/.wh..wh..opq", tarfile.REGTYPE, b"", 0o644),
    ("etc/conf.d/new.conf", tarfile.REGTYPE, b"new=2\n", 0o644),
    ("app/", tarfile.DIRTYPE, "", 0o755),
    ("app/data.txt", tarfile.REGTYPE, b"application data\n", 0o640),
    ("app/data-link.txt", tarfile.LNKTYPE, "app/data.txt", 0o640),
    ("app/cache.pyc", tarfile.REGTYPE, b"\x00compiled", 0o644),
]


def _layer(entries: Iterable[tuple[str, bytes, str | bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, kind, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = mode
            info.mtime = _MTIME
            if kind == tarfile.REGTYPE:
                assert isinstance(data, bytes)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                    info.linkname = str(data)
                tar.addfile(info)
    return buf.getvalue()


def build(path: str, tag: str = "occystrap/sample:latest") -> None:
    layers = [_layer(_BASE), _layer(_TOP)]
    diff_ids = ["sha256:" + hashlib.sha256(b).hexdigest() for b in layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/hello"],
            "WorkingDir": "/app",
            "Labels": {"org.opencontainers.image.title": "occystrap sample"},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": "2023-11-14T22:13:20Z", "created_by": "sample: base files"},
            {
                "created": "2023-11-14T22:13:20Z",
                "created_by": "sample: whiteout, opaque dir, hardlink",
            },
        ],
    }
    config_raw = json.dumps(config, separators=(",", ":")).encode()
    config_name = hashlib.sha256(config_raw).hexdigest() + ".json"
    layer_names = [d.split(":")[1] + "/layer.tar" for d in diff_ids]
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": layer_names}]
    members = [(config_name, config_raw)]
    members += list(zip(layer_names, layers, strict=True))
    members.append(("manifest.json", json.dumps(manifest).encode()))
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as out:
        for name, data in members:
            if "/" in name:
                d = tarfile.TarInfo(name.split("/")[0])
                d.type, d.mode = tarfile.DIRTYPE, 0o755
                out.addfile(d)
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            out.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m occystrap.sample OUT.tar")
    build(sys.argv[1])
