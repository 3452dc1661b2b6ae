"""Issue 2, point 4: the write order is a contract, and a failed run leaves nothing behind.

A recording wrapper around each real sink (tar://, ocidir://, dir://) checks the order the
copy engine calls it in (begin, layers, config, manifest, commit), that nothing
complete-looking is visible at the destination before ``commit``, that the config and
manifest handed to the sink describe the layers it actually received (no stale
``rootfs.diff_ids``), and that a filter failing mid-layer ends in ``abort`` with no output.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from occystrap import api, copy_image, parse_filter
from occystrap.errors import MalformedInput
from occystrap.filters.base import LayerView, PassThrough
from occystrap.image import Image
from occystrap.model.config import ImageConfig
from occystrap.model.descriptor import Descriptor
from occystrap.model.digest import Digest
from occystrap.model.manifest import Manifest
from occystrap.sample import build
from occystrap.tario.entry import TarEntry
from occystrap.transports.base import BlobStream, LayerForm, LayerWrite, RunContext, Sink

Visible = Callable[[], bool]


class Recorder:
    """Passes every call to ``inner``, noting its name and whether output was visible."""

    def __init__(self, inner: Sink, visible: Visible) -> None:
        self.inner = inner
        self.visible = visible
        self.capabilities = inner.capabilities
        self.calls: list[str] = []
        self.seen_before_commit: list[str] = []
        self.layers: dict[int, tuple[Descriptor, str]] = {}  # index -> (descriptor, sha256)
        self.config: ImageConfig | None = None
        self.manifest: Manifest | None = None
        self._lock = threading.Lock()

    def _note(self, name: str) -> None:
        with self._lock:
            self.calls.append(name)
            if self.visible():
                self.seen_before_commit.append(name)

    def begin(self, image: Image) -> None:
        self._note("begin")
        self.inner.begin(image)

    def has_layer(self, digest: Digest) -> Descriptor | None:
        self._note("has_layer")
        return self.inner.has_layer(digest)

    def put_layer(self, blob: BlobStream, info: LayerWrite) -> Descriptor:
        self._note("put_layer")
        tap = _Tap(blob)
        desc = self.inner.put_layer(tap, info)
        with self._lock:
            self.layers[info.index] = (desc, tap.hasher.hexdigest())
        return desc

    def adopt_layer(self, path: str, info: LayerWrite) -> Descriptor | None:
        """A layer taken as a hard link of the source's copy (an OCI layout's way): a
        layer write like put_layer."""
        self._note("put_layer")
        desc: Descriptor | None = self.inner.adopt_layer(path, info)  # type: ignore[attr-defined]
        if desc is not None:
            with self._lock:
                self.layers[info.index] = (
                    desc,
                    hashlib.sha256(Path(path).read_bytes()).hexdigest(),
                )
        return desc

    def put_config(self, config: ImageConfig) -> Descriptor:
        self._note("put_config")
        self.config = config
        return self.inner.put_config(config)

    def put_manifest(self, manifest: Manifest) -> None:
        self._note("put_manifest")
        self.manifest = manifest
        self.inner.put_manifest(manifest)

    def commit(self) -> str:
        self._note("commit")
        return self.inner.commit()

    def abort(self) -> None:
        with self._lock:
            self.calls.append("abort")
        self.inner.abort()


class _Tap:
    """A BlobStream that hashes what the sink reads."""

    def __init__(self, inner: BlobStream) -> None:
        self.inner = inner
        self.hasher = hashlib.sha256()

    @property
    def size(self) -> int:
        return self.inner.size

    @size.setter
    def size(self, value: int) -> None:
        self.inner.size = value

    def read(self, n: int = -1, /) -> bytes:
        data = self.inner.read(n)
        self.hasher.update(data)
        return data

    def digest(self) -> Digest:
        return self.inner.digest()


class Boom(PassThrough):
    """Rewrites layer 1 and fails after its first entry."""

    name = "boom"
    rewrites_layers = True

    def process(self, entries: Iterator[TarEntry], layer: LayerView) -> Iterator[TarEntry]:
        for n, entry in enumerate(entries):
            if layer.index == 1 and n == 1:
                raise MalformedInput("boom: injected failure")
            yield entry


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sample") / "sample.tar"
    build(str(path))
    return path


def _listed(index: Path, ref: str) -> bool:
    if not index.exists():
        return False
    doc: dict[str, Any] = json.loads(index.read_text())
    names = [
        m.get("annotations", {}).get("org.opencontainers.image.ref.name") for m in doc["manifests"]
    ]
    return ref in names


def destinations(out: Path) -> dict[str, tuple[str, Visible]]:
    return {
        "tar": (f"tar://{out / 'out.tar'}", lambda: (out / "out.tar").exists()),
        "ocidir": (
            f"ocidir://{out / 'layout'}:v1",
            lambda: _listed(out / "layout/index.json", "v1"),
        ),
        "dir": (f"dir://{out / 'store'}", lambda: (out / "store/manifest.json").exists()),
        "dir-unique": (
            f"dir://{out / 'shared'}?unique_names=true",
            lambda: (
                (out / "shared/catalog.json").exists()
                and "occystrap/sample" in (out / "shared/catalog.json").read_text()
            ),
        ),
    }


KINDS = ["tar", "ocidir", "dir", "dir-unique"]


@pytest.mark.parametrize("kind", KINDS)
def test_sink_calls_follow_the_contract(sample: Path, tmp_path: Path, kind: str) -> None:
    uri, visible = destinations(tmp_path)[kind]
    ctx = RunContext()
    filters = [parse_filter("exclude:pattern=app/cache.pyc"), parse_filter("normalize-timestamps")]
    with api.open_source(f"tar://{sample}", ctx) as image:
        rec = Recorder(api.open_sink(uri, ctx), visible)
        result = copy_image(image, rec, filters, ctx)
    calls = rec.calls
    assert calls[0] == "begin" and calls[-1] == "commit", calls
    assert "abort" not in calls
    config_at, manifest_at = calls.index("put_config"), calls.index("put_manifest")
    last_layer = max(i for i, c in enumerate(calls) if c in ("put_layer", "has_layer"))
    assert last_layer < config_at < manifest_at < len(calls) - 1, calls
    assert calls.count("put_config") == calls.count("put_manifest") == 1
    assert rec.seen_before_commit == [], f"output visible before commit: {rec.seen_before_commit}"
    assert visible(), "nothing visible after commit"
    # what was written and what the config and manifest say agree
    assert rec.config is not None and rec.manifest is not None
    assert sorted(rec.layers) == list(range(len(result.layers)))
    written = [rec.layers[i] for i in range(len(result.layers))]
    assert [d.digest for d, _ in written] == [d.digest for d in rec.manifest.layers]
    assert [d.size for d, _ in written] == [d.size for d in rec.manifest.layers]
    assert [f"sha256:{h}" for _, h in written] == [str(d.digest) for d, _ in written]
    if rec.capabilities.layer_form is LayerForm.UNCOMPRESSED:
        assert [f"sha256:{h}" for _, h in written] == [str(x) for x in rec.config.diff_ids]
    assert [w.diff_id for w in result.layers] == list(rec.config.diff_ids)
    assert rec.manifest.config.digest == rec.config.digest
    assert result.layers[1].diff_id != Digest.parse(
        "sha256:bc36e54f6b19e52fdd849b5d062da0f3778cf32e3dd23eeb0e25f09754e8c612"
    ), "the filtered layer must get a new diff_id"


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.mark.parametrize("kind", KINDS)
def test_failure_mid_layer_aborts_and_leaves_nothing(
    sample: Path, tmp_path: Path, kind: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    uri, visible = destinations(out)[kind]
    ctx = RunContext()
    with api.open_source(f"tar://{sample}", ctx) as image:
        rec = Recorder(api.open_sink(uri, ctx), visible)
        with pytest.raises(MalformedInput, match="injected failure"):
            copy_image(image, rec, [Boom()], ctx)
    assert rec.calls[-1] == "abort" and "commit" not in rec.calls, rec.calls
    assert "put_manifest" not in rec.calls and "put_config" not in rec.calls, rec.calls
    assert not visible()
    leftovers = [p for p in _tree(out) if ".tmp" in p or p.endswith(".partial")]
    assert leftovers == [], leftovers
    if kind == "tar":
        assert _tree(out) == []


def test_failed_tarball_run_through_the_cli_leaves_no_file(sample: Path, tmp_path: Path) -> None:
    """A corrupt layer: exit 1, one line, and no complete-looking (or any) tarball."""
    broken = tmp_path / "broken.tar"
    with tarfile.open(sample) as src, tarfile.open(broken, "w") as dst:
        for member in src.getmembers():
            body = src.extractfile(member) if member.isfile() else None
            data = body.read() if body else None
            if data is not None and member.name.endswith("layer.tar"):
                data = data[:600] + bytes([data[600] ^ 1]) + data[601:]
            dst.addfile(member, _bytes(data))
    from lab.tools import run_occystrap

    done = run_occystrap("process", f"tar://{broken}", f"tar://{tmp_path / 'out.tar'}")
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "digest mismatch" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.tar"]


def _bytes(data: bytes | None) -> Any:
    import io

    return io.BytesIO(data) if data is not None else None
