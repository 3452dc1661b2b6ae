"""Filters (normalize-timestamps, exclude, search, inspect): at the tar-entry level, judged by
Python's tarfile, and end to end through ocidir:// and tar://, judged by skopeo and umoci."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import tarfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lab import tarspec
from lab.edgecase import CAP_NET_RAW
from lab.ocilayout import LayoutInfo, build_oci_layout
from lab.registry import Registry
from lab.tarspec import TarSpec, directory, file, hardlink, opaque, symlink, whiteout
from lab.tools import OccystrapRunner, skopeo, umoci
from occystrap import api
from occystrap.copy import CopyResult
from occystrap.copy_entries import ChangeTracker, through_chain
from occystrap.errors import InvalidOption, MalformedInput, OutputError
from occystrap.events import NullReporter
from occystrap.filters.base import Filter, ImageView, LayerView, PassThrough
from occystrap.filters.catalog import parse_filter
from occystrap.filters.exclude import Exclude
from occystrap.filters.inspect import Inspect
from occystrap.filters.normalize_timestamps import NormalizeTimestamps
from occystrap.filters.options import (
    ExcludeOptions,
    InspectOptions,
    NormalizeOptions,
    SearchOptions,
)
from occystrap.filters.search import Search
from occystrap.model.config import ImageConfig
from occystrap.tario import iter_entries, iter_tar_bytes
from occystrap.transports.base import RunContext

MIB = 1 << 20

# -- helpers (also used by test_filter_properties.py and test_reproducible.py) ----------------


def view(index: int = 0, count: int = 1) -> LayerView:
    return LayerView(index, count, None, None, None, "application/vnd.oci.image.layer.v1.tar", None)


def run_chain(
    data: bytes, filters: Sequence[Filter], layer: LayerView | None = None
) -> tuple[bytes, bool]:
    """The layer tar ``data`` through ``filters`` as the copy engine runs it; (tar, changed)."""
    layer = layer or view()
    state = ChangeTracker()
    members = through_chain(iter_entries(io.BytesIO(data)), filters, layer, state)
    out = b"".join(state.keep_trailer(iter_tar_bytes(members), layer.source_end))
    return out, state.changed


def members(data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Every member of ``data`` with its content, read by the stdlib (independent judge)."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for info in tar:
            body = tar.extractfile(info) if info.isreg() else None
            out.append((info, body.read() if body else b""))
    return out


def names(data: bytes) -> list[str]:
    return [tarspec_norm(i.name) for i, _ in members(data)]


def tarspec_norm(name: str) -> str:
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def xattrs(info: tarfile.TarInfo) -> dict[str, bytes]:
    return {
        k[len("SCHILY.xattr.") :]: v.encode("utf-8", "surrogateescape")
        for k, v in info.pax_headers.items()
        if k.startswith("SCHILY.xattr.")
    }


def normalize(ts: int | None = None) -> NormalizeTimestamps:
    return NormalizeTimestamps(NormalizeOptions(ts=ts))


def exclude(*patterns: str) -> Exclude:
    return Exclude(ExcludeOptions(pattern=patterns))


class Collect:
    """A Reporter that keeps results and notices."""

    def __init__(self) -> None:
        self.results: list[str] = []
        self.notices: list[str] = []

    def notice(self, text: str) -> None:
        self.notices.append(text)

    def result(self, text: str) -> None:
        self.results.append(text)

    def layer_started(self, index: int, label: str, total: int | None) -> None:
        pass

    def layer_progress(self, index: int, nbytes: int) -> None:
        pass

    def layer_finished(self, index: int, outcome: str) -> None:
        pass


def process(source: str, dest: str, filters: Sequence[str]) -> CopyResult:
    """``api.process`` for a single image."""
    result = api.process(source, dest, filters)
    assert isinstance(result, CopyResult)
    return result


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob(root: Path, digest: str) -> Path:
    return root / "blobs" / "sha256" / digest.split(":", 1)[1]


def read_layout(root: Path, tag: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """(manifest, config, manifest bytes) of ``tag`` in the layout at ``root``."""
    index = json.loads((root / "index.json").read_text())
    [entry] = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    ]
    raw = blob(root, entry["digest"]).read_bytes()
    manifest = json.loads(raw)
    config = json.loads(blob(root, manifest["config"]["digest"]).read_bytes())
    return manifest, config, raw


def layer_tars(root: Path, manifest: dict[str, Any]) -> list[bytes]:
    """Uncompressed tars of every layer of ``manifest`` (small test images only)."""
    import gzip

    import zstandard

    out = []
    for desc in manifest["layers"]:
        data = blob(root, desc["digest"]).read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        elif data[:4] == b"\x28\xb5\x2f\xfd":
            data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        out.append(data)
    return out


def judge_layout(root: Path, tag: str, work: Path, unpack: bool = True) -> Path:
    """skopeo copies it (verifying every digest and size), umoci unpacks it (not for zstd,
    which umoci 0.4 cannot read); our own check that diff_ids are the sha256 of the
    uncompressed layers. Returns the unpacked rootfs."""
    manifest, config, _ = read_layout(root, tag)
    tars = layer_tars(root, manifest)
    assert config["rootfs"]["diff_ids"] == [sha256(t) for t in tars]
    for desc in manifest["layers"]:
        assert blob(root, desc["digest"]).stat().st_size == desc["size"]
    check = work / "check"
    skopeo("copy", f"oci:{root}:{tag}", f"oci:{check}:{tag}")
    bundle = work / "bundle"
    if not unpack:
        return bundle / "rootfs"
    umoci("unpack", "--rootless", "--image", f"{check}:{tag}", str(bundle))
    return bundle / "rootfs"


def judge_archive(path: Path, work: Path) -> None:
    """skopeo reads the docker-archive, checking each layer.tar against the config's diff_ids."""
    skopeo("copy", f"docker-archive:{path}", f"oci:{work / 'check-archive'}:x")


# -- option parsing -------------------------------------------------------------------------


def test_exclude_accepts_comma_lists_and_repeats() -> None:
    f = parse_filter("exclude:pattern=*.pyc,*.pyo")
    assert isinstance(f, Exclude) and f.patterns == ("*.pyc", "*.pyo")
    f = parse_filter("exclude:pattern=a/**,pattern=b,c")
    assert isinstance(f, Exclude) and f.patterns == ("a/**", "b", "c")
    with pytest.raises(InvalidOption):
        parse_filter("exclude")
    with pytest.raises(InvalidOption):
        parse_filter("exclude:glob=x")


def test_normalize_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert (
        isinstance(f := parse_filter("normalize-timestamps"), NormalizeTimestamps)
        and f.timestamp == 0
    )
    assert (
        isinstance(f := parse_filter("normalize_timestamps:ts=1"), NormalizeTimestamps)
        and f.timestamp == 1
    )
    assert isinstance(f := parse_filter("NORMALIZE-TIMESTAMPS:timestamp=7"), NormalizeTimestamps)
    assert f.timestamp == 7
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234")
    assert (
        isinstance(f := parse_filter("normalize-timestamps"), NormalizeTimestamps)
        and f.timestamp == 1234
    )
    assert (
        isinstance(f := parse_filter("normalize-timestamps:ts=0"), NormalizeTimestamps)
        and f.timestamp == 0
    )
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(InvalidOption, match="SOURCE_DATE_EPOCH"):
        parse_filter("normalize-timestamps")
    for bad in ("ts=-1", "ts=abc", f"ts={8**11}", "ts=1,timestamp=2"):
        with pytest.raises(InvalidOption):
            parse_filter(f"normalize-timestamps:{bad}")


def test_search_and_inspect_options() -> None:
    f = parse_filter("search:pattern=*.conf,regex=false,script-friendly=true")
    assert isinstance(f, Search) and f.options.script_friendly and f.options.pattern == "*.conf"
    f = parse_filter("search:pattern=a{1,2}b,regex=true")
    assert isinstance(f, Search) and f.options.pattern == "a{1,2}b" and f.matches("x/aab")
    for bad in (
        "search",
        "search:pattern=(,regex=true",
        "search:pattern=x,json=true,script_friendly=true",
    ):
        with pytest.raises(InvalidOption):
            parse_filter(bad)
    with pytest.raises(InvalidOption):
        parse_filter("inspect")
    assert isinstance(parse_filter("inspect:file=/tmp/x.jsonl"), Inspect)


# -- normalize-timestamps -----------------------------------------------------------------------

LONG = "opt/" + "d" * 90 + "/" + "f" * 120 + ".txt"
SAMPLE = [
    directory("usr", mtime=1_600_000_000),
    file("usr/plain", "plain\n", mtime=1_600_000_001),
    file("usr/cap", "binary", 0o755, xattrs={"security.capability": CAP_NET_RAW}),
    file("usr/acl", "acl", pax={"SCHILY.acl.access": "user::rw-,group::r--,other::r--"}),
    file(
        "usr/times",
        "t",
        pax={"atime": "1700000000.25", "ctime": "1700000001.5", "LIBARCHIVE.creationtime": "1"},
    ),
    file("usr/subsec", "s", pax={"mtime": "1700000000.123456789"}),
    file(LONG, "long\n"),
    symlink("usr/link", "plain"),
    hardlink("usr/hard", "usr/plain"),
    file("usr/big-uid", "u", uid=3_000_000, gid=5),
]


def test_normalize_sets_mtime_keeps_other_records() -> None:
    src = tarspec.tar_bytes(SAMPLE)
    out, changed = run_chain(src, [normalize(42)])
    assert changed
    before, after = members(src), members(out)
    assert [i.name for i, _ in after] == [i.name for i, _ in before]
    for (old, old_body), (new, new_body) in zip(before, after, strict=True):
        assert new.mtime == 42
        assert not {"atime", "ctime", "LIBARCHIVE.creationtime", "mtime"} & new.pax_headers.keys()
        assert xattrs(new) == xattrs(old)
        assert new_body == old_body
        assert (new.mode, new.uid, new.gid, new.type, new.linkname) == (
            old.mode, old.uid, old.gid, old.type, old.linkname,
        )  # fmt: skip
    acl = dict((i.name, i) for i, _ in after)["usr/acl"]
    assert acl.pax_headers["SCHILY.acl.access"] == "user::rw-,group::r--,other::r--"
    assert xattrs(dict((i.name, i) for i, _ in after)["usr/cap"]) == {
        "security.capability": CAP_NET_RAW
    }


def test_normalize_writes_ustar_where_it_fits() -> None:
    """Only entries that need PAX (xattrs, ACLs, long names, big ids) keep an x header."""
    out, _ = run_chain(tarspec.tar_bytes(SAMPLE), [normalize(0)])
    need_pax = {"usr/cap", "usr/acl", LONG, "usr/big-uid"}
    for entry in iter_entries(io.BytesIO(out)):
        assert entry.raw_header is not None
        blocks = len(entry.raw_header) // 512
        assert (blocks > 1) == (tarspec_norm(entry.info.name) in need_pax), entry.info.name
    assert len(out) < len(tarspec.tar_bytes(SAMPLE))  # the PAX source shrinks


def test_normalize_is_idempotent_and_keeps_normalized_entries_raw() -> None:
    once, _ = run_chain(tarspec.tar_bytes(SAMPLE), [normalize(5)])
    twice, changed = run_chain(once, [normalize(5)])
    assert twice == once and not changed
    other, changed = run_chain(once, [normalize(6)])
    assert changed and {i.mtime for i, _ in members(other)} == {6}


def test_normalize_global_header_times() -> None:
    """A PAX global mtime applies to every later member; normalize must override it."""
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf,
        mode="w",
        format=tarfile.PAX_FORMAT,
        pax_headers={"mtime": "99", "comment": "c"},
    ) as tar:
        for spec in (file("a", "a", mtime=0), file("b", "b", mtime=5)):
            tar.addfile(tarspec.tarinfo(spec), io.BytesIO(spec.content))
    src = buf.getvalue()
    assert {i.mtime for i, _ in members(src)} == {99}
    out, _ = run_chain(src, [normalize(0)])
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        assert {i.mtime for i in tar} == {0}
        assert tar.pax_headers == {"comment": "c"}
    assert run_chain(out, [normalize(0)]) == (out, False)


def test_normalize_gnu_format_long_names() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for spec in (file(LONG, "x"), symlink("s", "t/" * 60)):
            tar.addfile(tarspec.tarinfo(spec), io.BytesIO(spec.content))
    out, _ = run_chain(buf.getvalue(), [normalize(0)])
    after = members(out)
    assert [(i.name, i.linkname, i.mtime) for i, _ in after] == [(LONG, "", 0), ("s", "t/" * 60, 0)]


def test_normalize_config_dates() -> None:
    raw = json.dumps(
        {
            "created": "2024-05-01T10:00:00.123Z",
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [
                {"created": "2024-05-01T09:00:00Z", "created_by": "x"},
                {"created_by": "y"},
            ],
            "config": {"Labels": {"created": "keep"}},
        }
    ).encode()
    edited = normalize(86400).edit_config(ImageConfig.parse(raw))
    assert edited.obj["created"] == "1970-01-02T00:00:00Z"
    assert edited.obj["history"] == [
        {"created": "1970-01-02T00:00:00Z", "created_by": "x"},
        {"created_by": "y"},
    ]
    assert edited.obj["config"] == {"Labels": {"created": "keep"}}
    assert normalize(86400).edit_config(edited) is edited  # nothing to change: same bytes


# -- exclude -----------------------------------------------------------------------------------

TREE = [
    directory(".git"),
    file(".git/config", "[core]\n"),
    directory(".git/objects"),
    file(".git/objects/ab", "obj"),
    directory("app"),
    file("app/main.py", "print()\n"),
    file("app/main.pyc", "bytecode"),
    file("app/util.pyo", "bytecode"),
    directory("app/.git"),
    file("app/.git/HEAD", "ref"),
    directory("app/sub"),
    directory("app/sub/deep"),
    file("app/sub/deep/x.pyc", "x"),
    file("app/sub/deep/keep.txt", "keep"),
    directory("docs"),
    file("docs/readme", "r"),
]


@pytest.mark.parametrize(
    ("patterns", "removed"),
    [
        (("*.pyc",), {"app/main.pyc", "app/sub/deep/x.pyc"}),
        (("*.pyc,*.pyo",), {"app/main.pyc", "app/sub/deep/x.pyc", "app/util.pyo"}),
        (
            ("**/.git",),
            {".git", ".git/config", ".git/objects", ".git/objects/ab", "app/.git", "app/.git/HEAD"},
        ),
        (
            (".git",),
            {".git", ".git/config", ".git/objects", ".git/objects/ab", "app/.git", "app/.git/HEAD"},
        ),
        (("/.git",), {".git", ".git/config", ".git/objects", ".git/objects/ab"}),
        (("**/.git/**",), {".git/config", ".git/objects", ".git/objects/ab", "app/.git/HEAD"}),
        (("app/sub",), {"app/sub", "app/sub/deep", "app/sub/deep/x.pyc", "app/sub/deep/keep.txt"}),
        (("app/**/*.txt",), {"app/sub/deep/keep.txt"}),
        (("docs", "app/*.py"), {"docs", "docs/readme", "app/main.py"}),
        (("nothing-matches",), set()),
    ],
)
def test_exclude_patterns(patterns: tuple[str, ...], removed: set[str]) -> None:
    src = tarspec.tar_bytes(TREE)
    f = parse_filter("exclude:" + ",".join(f"pattern={p}" for p in patterns))
    out, changed = run_chain(src, [f])
    before = names(src)
    assert names(out) == [n for n in before if n not in removed]
    assert changed == bool(removed)
    if not removed:
        assert out == src  # byte for byte, padding included


def test_exclude_hardlink_to_removed_file_becomes_the_file() -> None:
    specs = [
        directory("d"),
        file(
            "d/orig", "content\n", 0o750, uid=7, gid=8, xattrs={"security.capability": CAP_NET_RAW}
        ),
        hardlink("d/l1", "d/orig", mode=0o750, uid=7, gid=8),
        hardlink("keep/l2", "d/orig", mode=0o750, uid=7, gid=8),
        hardlink("d/l3", "./d/orig", mode=0o750, uid=7, gid=8),
        file("big", source=None),
    ]
    out, _ = run_chain(tarspec.tar_bytes(specs), [exclude("d/orig")])
    got = {tarspec_norm(i.name): (i, body) for i, body in members(out)}
    assert set(got) == {"d", "d/l1", "keep/l2", "d/l3", "big"}
    l1, body = got["d/l1"]
    assert l1.isreg() and body == b"content\n" and l1.size == 8
    assert (l1.mode, l1.uid, l1.gid) == (0o750, 7, 8)
    assert xattrs(l1) == {"security.capability": CAP_NET_RAW}
    for other in ("keep/l2", "d/l3"):
        assert got[other][0].islnk() and got[other][0].linkname == "d/l1"


def test_exclude_link_chains_and_removed_links() -> None:
    specs = [
        file("a", "A"),
        hardlink("b", "a"),  # removed, names a
        hardlink("c", "b"),  # names a removed link: must point at a
        file("x", "X"),
        hardlink("y", "x"),  # removed
        hardlink("z", "y"),  # x is removed too: z carries X
    ]
    out, _ = run_chain(tarspec.tar_bytes(specs), [exclude("b", "x", "y")])
    got = {i.name: (i, body) for i, body in members(out)}
    assert got["c"][0].islnk() and got["c"][0].linkname == "a"
    assert got["z"][0].isreg() and got["z"][1] == b"X"
    assert list(got) == ["a", "c", "z"]


def test_exclude_big_removed_file_is_spooled_not_buffered(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for i in range(5):
            f.write(bytes([i]) * MIB)
    specs = [file("big", source=big), hardlink("link", "big"), file("after", "after")]
    out, _ = run_chain(tarspec.tar_bytes(specs), [exclude("big")])
    got = {i.name: body for i, body in members(out)}
    assert list(got) == ["link", "after"]
    assert got["link"] == big.read_bytes()


def test_exclude_spools_in_the_runs_temp_dir(tmp_path: Path) -> None:
    specs = [file("big", "x" * 5000), hardlink("link", "big")]
    missing = dataclasses.replace(view(), temp_dir=str(tmp_path / "missing"))
    with pytest.raises(OutputError, match="exclude: cannot create a temporary file"):
        run_chain(tarspec.tar_bytes(specs), [exclude("big")], missing)
    out, _ = run_chain(tarspec.tar_bytes(specs), [exclude("big")], view())
    assert {i.name: body for i, body in members(out)} == {"link": b"x" * 5000}


def test_the_engine_gives_filters_the_runs_temp_dir(tmp_path: Path) -> None:
    seen: list[str | None] = []

    class Spy(PassThrough):
        rewrites_layers = True

        def process(self, entries: Iterator[Any], layer: LayerView) -> Iterator[Any]:
            seen.append(layer.temp_dir)
            return entries

    src = small_image(tmp_path / "src")
    ctx = RunContext(temp_dir=str(tmp_path), jobs=1)
    api.process(f"ocidir://{src.path}:latest", f"tar://{tmp_path / 'o.tar'}", [Spy()], ctx)
    assert seen == [str(tmp_path)] * 2


def test_exclude_link_to_excluded_lower_layer_file_is_removed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    specs = [hardlink("up/link", "low/file"), hardlink("up/ok", "low/other"), file("up/f", "f")]
    with caplog.at_level(logging.WARNING, logger="occystrap.filters.exclude"):
        out, _ = run_chain(tarspec.tar_bytes(specs), [exclude("low/file")])
    assert names(out) == ["up/ok", "up/f"]
    assert "up/link" in caplog.text


def test_exclude_whiteouts_and_opaque_markers() -> None:
    specs = [
        directory("a"),
        whiteout("a/gone.pyc"),
        whiteout("a/gone.txt"),
        directory("cache"),
        opaque("cache"),
        file("cache/x", "x"),
        directory("keep"),
        opaque("keep"),
        file("keep/.hidden", "h"),
        whiteout("cache"),
    ]
    out, _ = run_chain(tarspec.tar_bytes(specs), [exclude("*.pyc", "cache")])
    assert names(out) == ["a", "a/.wh.gone.txt", "keep", "keep/.wh..wh..opq", "keep/.hidden"]
    # a pattern for hidden files does not take the opaque marker (it stands for its directory)
    out, _ = run_chain(tarspec.tar_bytes(specs), [exclude("**/.*")])
    assert "keep/.wh..wh..opq" in names(out) and "keep/.hidden" not in names(out)


def test_exclude_keeps_global_headers_and_never_duplicates() -> None:
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "c"}
    ) as tar:
        for spec in TREE:
            tar.addfile(tarspec.tarinfo(spec), io.BytesIO(spec.content))
    out, _ = run_chain(buf.getvalue(), [exclude("*")])
    # (the stdlib cannot open a tar holding only a global header, even its own)
    [glob] = list(iter_entries(io.BytesIO(out)))
    assert glob.info.type == tarfile.XGLTYPE and glob.info.pax_headers == {"comment": "c"}
    specs = [file("a", "A"), hardlink("b", "a"), hardlink("c", "a"), hardlink("d", "b")]
    out, _ = run_chain(tarspec.tar_bytes(specs), [exclude("a")])
    assert sorted(names(out)) == ["b", "c", "d"] and len(set(names(out))) == 3


def test_bad_whiteout_is_malformed_input() -> None:
    with pytest.raises(MalformedInput):
        run_chain(tarspec.tar_bytes([file("d/.wh.", "")]), [exclude("x")])


# -- search ----------------------------------------------------------------------------------


def search_layers(layers: list[list[TarSpec]], pattern: str, **opts: Any) -> tuple[Search, Collect]:
    finder = Search(SearchOptions(pattern=pattern, **opts))
    for index, specs in enumerate(layers):
        out, changed = run_chain(tarspec.tar_bytes(specs), [finder], view(index, len(layers)))
        assert not changed
    reporter = Collect()
    config = ImageConfig.parse(
        b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    )
    layers_view = tuple(
        {"digest": f"sha256:{i:064x}", "diff_id": None, "size": 0, "media_type": "x"}
        for i in range(len(layers))
    )
    finder.finish(ImageView("127.0.0.1:5000/team/app:v1", None, config, layers_view), reporter)
    return finder, reporter


EDGE_STATUS = {
    ("etc/debian_version", 0): ("deleted", 1),
    ("etc/hostname", 0): ("replaced", 1),
    ("etc/hostname", 1): ("visible", None),
    ("etc/skel/.profile", 0): ("deleted", 1),
    ("usr/lib/libold.so", 0): ("deleted", 1),
    ("usr/lib/sub/deep.so", 0): ("deleted", 1),
    ("usr/libexec/helper", 0): ("visible", None),
    ("usr/lib.conf", 0): ("visible", None),
    ("opt/gone-dir/x", 0): ("deleted", 1),
    ("opt/gone-dir/sub/y", 0): ("deleted", 1),
    ("opt/gone-dir-sibling/keep", 0): ("visible", None),
    ("deep/a/b/c/d/e.txt", 0): ("deleted", 1),
    ("deep/a/b/c/d/keep.txt", 0): ("visible", None),
    ("srv/dir-to-file/inner", 0): ("deleted", 1),
    ("srv/file-to-dir", 0): ("replaced", 1),
    ("opt/same/tmp.txt", 1): ("visible", None),
    ("opt/links/rel", 1): ("deleted", 2),
    ("opt/links/orig.txt", 1): ("visible", None),
    ("opt/opq/a", 1): ("deleted", 2),
    ("opt/opq/sub/b", 1): ("deleted", 2),
    ("opt/opq/c", 2): ("visible", None),
    ("opt/dot-prefixed.txt", 1): ("visible", None),
    ("opt/gone-dir/reborn.txt", 2): ("visible", None),
}


def test_search_status_over_the_edge_image() -> None:
    from lab.edgecase import edge_case_layers

    finder, reporter = search_layers(edge_case_layers(), ".", regex=True, json=True)
    hits = [json.loads(line) for line in reporter.results]
    found = {(h["path"], h["layer"]): (h["status"], h["status_layer"]) for h in hits}
    for key, expected in EDGE_STATUS.items():
        assert found.get(key) == expected, key
    assert not any(".wh." in h["path"] for h in hits)
    hit = next(h for h in hits if h["path"] == "opt/links/hard1")
    assert (hit["type"], hit["link_target"], hit["size"]) == ("hardlink", "opt/links/orig.txt", 0)
    hit = next(h for h in hits if h["path"] == "etc/hostname" and h["layer"] == 1)
    assert (hit["type"], hit["size"], hit["layer_digest"]) == ("file", 5, f"sha256:{1:064x}")
    assert finder.hits == len(hits)


def test_search_glob_and_regex_match_exactly() -> None:
    layers = [
        [
            directory("etc"),
            file("etc/a.conf"),
            file("etc/b.txt"),
            directory("etc/c.conf"),
            file("etc/c.conf/x"),
        ]
    ]
    _, rep = search_layers(layers, "*.conf", json=True)
    assert [json.loads(r)["path"] for r in rep.results] == ["etc/a.conf", "etc/c.conf"]
    _, rep = search_layers(layers, "etc/*", json=True)
    assert [json.loads(r)["path"] for r in rep.results] == ["etc/a.conf", "etc/b.txt", "etc/c.conf"]
    _, rep = search_layers(layers, r"\.conf$", regex=True, json=True)
    assert [json.loads(r)["path"] for r in rep.results] == ["etc/a.conf", "etc/c.conf"]
    finder, rep = search_layers(layers, "nothing")
    assert rep.results == [] and finder.hits == 0 and "Found 0 match(es)" in rep.notices[0]


def test_search_script_friendly_is_unambiguous() -> None:
    layers = [[directory("a"), file("a/we:ird\tname\nx", "1"), symlink("a/s", "t:5000/x")]]
    _, rep = search_layers(layers, "a/*", script_friendly=True)
    assert not rep.notices
    rows = [line.split("\t") for line in rep.results]
    assert all(len(r) == 8 for r in rows)
    assert rows[0] == [
        "127.0.0.1:5000/team/app:v1",
        f"sha256:{0:064x}",
        "a/we:ird\\tname\\nx",
        "file",
        "1",
        "",
        "visible",
        "",
    ]
    assert rows[1][2:6] == ["a/s", "symlink", "0", "t:5000/x"]
    _, rep = search_layers(layers, "a/s")
    assert rep.results == [f"sha256:{0:064x}  a/s -> t:5000/x (symlink, 0 bytes) [visible]"]


# -- inspect ---------------------------------------------------------------------------------


def test_inspect_hash_equals_the_written_tar(tmp_path: Path) -> None:
    """Mid-chain and at the end, inspect's diff_id is the sha256 of the tar the writer makes."""
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"mtime": "5", "uid": "9"}
    ) as tar:
        for spec in SAMPLE:
            tar.addfile(tarspec.tarinfo(spec), io.BytesIO(spec.content))
    src = buf.getvalue()
    first, second = (Inspect(InspectOptions(file=str(tmp_path / n))) for n in "ab")
    layer = LayerView(0, 1, None, None, None, "x", None)
    out, _ = run_chain(src, [first, normalize(3), exclude("usr/plain"), second], layer)
    assert first._layers[0]["diff_id"] == sha256(src)  # nothing changed yet: the source's bytes
    assert second._layers[0]["diff_id"] == sha256(out)
    assert second._layers[0]["tar_size"] == len(out)


# -- end to end ------------------------------------------------------------------------------


def small_image(path: Path) -> LayoutInfo:
    return build_oci_layout(
        path,
        [
            [
                directory("app"),
                file("app/a.pyc", "a"),
                file("app/keep", "k"),
                file("app/cap", "c", xattrs={"security.capability": CAP_NET_RAW}),
            ],
            [directory("etc"), file("etc/conf", "c\n")],
        ],
    )


CHAINS = [
    ["normalize-timestamps"],
    ["exclude:pattern=**/*.so,opt/links/orig.txt"],
    ["normalize-timestamps:ts=7", "exclude:pattern=usr/lib/**"],
    ["exclude:pattern=usr/lib/**", "normalize-timestamps:ts=7"],
    [
        "inspect:file={tmp}/a.jsonl",
        "exclude:pattern=opt/x/xattr.txt",
        "search:pattern=*.txt",
        "normalize-timestamps",
        "inspect:file={tmp}/b.jsonl",
    ],
    ["search:pattern=*"],
    ["normalize-timestamps", "normalize-timestamps:ts=9"],
    ["exclude:pattern=etc", "exclude:pattern=nothing,srv/**"],
]


@pytest.mark.parametrize("chain", CHAINS, ids=lambda c: "+".join(f.split(":")[0] for f in c))
@pytest.mark.parametrize("output", ["ocidir", "tar"])
def test_chains_give_consistent_images(
    edge_layout: LayoutInfo, tmp_path: Path, chain: list[str], output: str
) -> None:
    filters = [f.replace("{tmp}", str(tmp_path)) for f in chain]
    if output == "ocidir":
        result = process(
            f"ocidir://{edge_layout.path}:latest", f"ocidir://{tmp_path / 'out'}:v1", filters
        )
        rootfs = judge_layout(tmp_path / "out", "v1", tmp_path)
        assert rootfs.is_dir()
        manifest, config, _ = read_layout(tmp_path / "out", "v1")
        tars = layer_tars(tmp_path / "out", manifest)
    else:
        result = process(
            f"ocidir://{edge_layout.path}:latest", f"tar://{tmp_path / 'out.tar'}", filters
        )
        judge_archive(tmp_path / "out.tar", tmp_path)
        with tarfile.open(tmp_path / "out.tar") as outer:
            index = json.load(outer.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
            config = json.load(outer.extractfile(index["Config"]))  # type: ignore[arg-type]
            tars = [outer.extractfile(name).read() for name in index["Layers"]]  # type: ignore[union-attr]
    assert config["rootfs"]["diff_ids"] == [sha256(t) for t in tars]
    assert [str(w.diff_id) for w in result.layers] == config["rootfs"]["diff_ids"]
    all_names = [n for t in tars for n in names(t)]
    for t in tars:
        assert len(names(t)) == len(set(names(t)))  # no duplicate paths
    if any(f.startswith("normalize") for f in filters):
        ts = (
            9
            if "normalize-timestamps:ts=9" in filters
            else 7
            if any("ts=7" in f for f in filters)
            else 0
        )
        assert {i.mtime for t in tars for i, _ in members(t)} == {ts}
        stamp = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert {h["created"] for h in config["history"]} | {config["created"]} == {stamp}
    if any("exclude:pattern=usr/lib/**" in f for f in filters):
        assert [n for n in all_names if n.startswith("usr/lib/")] == ["usr/lib/.wh..wh..opq"]
        assert "usr/lib" in all_names
        assert "usr/libexec/helper" in all_names
    cap = [i for t in tars for i, _ in members(t) if i.name == "opt/x/cap"]
    assert [xattrs(i) for i in cap] == [{"security.capability": CAP_NET_RAW}]
    if output == "ocidir" and filters == ["search:pattern=*"]:
        assert str(result.manifest.digest) == edge_layout.manifest_digest  # search changes nothing


def test_normalize_sets_the_created_annotation(tmp_path: Path) -> None:
    created = "org.opencontainers.image.created"
    src = build_oci_layout(
        tmp_path / "src",
        [[directory("etc"), file("etc/conf", "c\n")]],
        manifest_annotations={created: "2024-01-02T03:04:05Z", "org.example.kept": "yes"},
    )
    out = tmp_path / "out"
    process(f"ocidir://{src.path}:latest", f"ocidir://{out}:v1", ["normalize-timestamps:ts=7"])
    manifest, config, raw = read_layout(out, "v1")
    assert manifest["annotations"] == {created: "1970-01-01T00:00:07Z", "org.example.kept": "yes"}
    assert config["created"] == "1970-01-01T00:00:07Z"
    judge_layout(out, "v1", tmp_path, unpack=False)
    # normalizing the result again changes nothing: the same manifest bytes
    again = process(f"ocidir://{out}:v1", f"ocidir://{out}:v2", ["normalize-timestamps:ts=7"])
    assert str(again.manifest.digest) == sha256(raw)
    # a source without the annotation does not get one
    plain = small_image(tmp_path / "plain")
    process(f"ocidir://{plain.path}:latest", f"ocidir://{out}:v3", ["normalize-timestamps"])
    assert "annotations" not in read_layout(out, "v3")[0]


def test_exclude_matching_nothing_keeps_every_blob(edge_layout: LayoutInfo, tmp_path: Path) -> None:
    result = process(
        f"ocidir://{edge_layout.path}:latest",
        f"ocidir://{tmp_path / 'out'}:v1",
        ["exclude:pattern=nothing/**"],
    )
    assert str(result.manifest.digest) == edge_layout.manifest_digest
    assert [w.outcome for w in result.layers] == ["copied"] * 3
    for digest in edge_layout.layer_digests:
        assert blob(tmp_path / "out", digest).read_bytes() == edge_layout.blob(digest).read_bytes()
    # one layer touched: the others keep their blobs
    result = process(
        f"ocidir://{edge_layout.path}:latest",
        f"ocidir://{tmp_path / 'o2'}:v1",
        ["exclude:pattern=opt/l3"],
    )
    digests = [str(w.descriptor.digest) for w in result.layers]
    assert (
        digests[:2] == edge_layout.layer_digests[:2] and digests[2] != edge_layout.layer_digests[2]
    )
    manifest, config, _ = read_layout(tmp_path / "o2", "v1")
    assert config["rootfs"]["diff_ids"][:2] == edge_layout.diff_ids[:2]
    judge_layout(tmp_path / "o2", "v1", tmp_path)


def test_exclude_matching_nothing_keeps_diff_ids_in_tar(
    edge_layout: LayoutInfo, tmp_path: Path
) -> None:
    result = process(
        f"ocidir://{edge_layout.path}:latest",
        f"tar://{tmp_path / 'o.tar'}",
        ["exclude:pattern=nothing"],
    )
    assert [str(w.diff_id) for w in result.layers] == edge_layout.diff_ids
    judge_archive(tmp_path / "o.tar", tmp_path)


def test_exclude_removes_from_the_unpacked_image(edge_layout: LayoutInfo, tmp_path: Path) -> None:
    process(f"ocidir://{edge_layout.path}:latest", f"ocidir://{tmp_path / 'out'}:v1",
                ["exclude:pattern=opt/links/orig.txt,usr/lib,**/*.txt"])  # fmt: skip
    rootfs = judge_layout(tmp_path / "out", "v1", tmp_path)
    assert not (rootfs / "opt/links/orig.txt").exists()
    assert not (rootfs / "usr/lib").exists() and (rootfs / "usr/libexec/helper").is_file()
    assert (rootfs / "opt/links/hard1").read_bytes() == b"link target\n"
    assert (rootfs / "opt/links/sub/hard2").stat().st_ino == (
        rootfs / "opt/links/hard1"
    ).stat().st_ino
    assert not list(rootfs.rglob("*.txt"))
    assert (rootfs / "etc/hostname").read_bytes() == b"lab2\n"


def test_inspect_between_filters(
    edge_layout: LayoutInfo, tmp_path: Path, run_occystrap: OccystrapRunner
) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    done = run_occystrap(
        "process", f"ocidir://{edge_layout.path}:latest", f"ocidir://{tmp_path / 'out'}:v1",
        "-f", f"inspect:file={a}", "-f", "exclude:pattern=opt/l3/**", "-f", f"inspect:file={b}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [before] = [json.loads(line) for line in a.read_text().splitlines()]
    [after] = [json.loads(line) for line in b.read_text().splitlines()]
    assert [layer["diff_id"] for layer in before["layers"]] == edge_layout.diff_ids
    assert [layer["digest"] for layer in before["layers"]] == edge_layout.layer_digests
    assert [layer["created_by"] for layer in before["layers"]] == [
        "lab layer 0",
        "lab layer 1",
        "lab layer 2",
    ]
    assert [x["diff_id"] for x in after["layers"]][:2] == edge_layout.diff_ids[:2]
    assert after["layers"][2]["diff_id"] != edge_layout.diff_ids[2]
    manifest, config, raw = read_layout(tmp_path / "out", "v1")
    assert [x["diff_id"] for x in after["layers"]] == config["rootfs"]["diff_ids"]
    assert [x["digest"] for x in after["layers"]] == [d["digest"] for d in manifest["layers"]]
    assert after["manifest_digest"] == before["manifest_digest"] == sha256(raw)
    assert [x["written"]["digest"] for x in before["layers"]] == [
        d["digest"] for d in manifest["layers"]
    ]
    # appended, not overwritten
    run_occystrap(
        "process",
        f"ocidir://{edge_layout.path}:latest",
        f"ocidir://{tmp_path / 'o2'}:v1",
        "-f",
        f"inspect:file={a}",
    )
    lines = [json.loads(line) for line in a.read_text().splitlines()]
    assert len(lines) == 2 and [x["diff_id"] for x in lines[1]["layers"]] == edge_layout.diff_ids


def test_search_command(edge_layout: LayoutInfo, run_occystrap: OccystrapRunner) -> None:
    src = f"ocidir://{edge_layout.path}:latest"
    done = run_occystrap("search", "--json", src, "*.txt")
    assert done.returncode == 0, done.stderr
    hits = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert {h["layer_digest"] for h in hits} <= set(edge_layout.layer_digests)
    assert ("deep/a/b/c/d/e.txt", "deleted", 1) in {
        (h["path"], h["status"], h["status_layer"]) for h in hits
    }
    done = run_occystrap("search", "--script-friendly", src, "opt/x/cap")
    assert done.returncode == 0
    [row] = [line.split("\t") for line in done.stdout.decode().splitlines()]
    assert row[1:] == [edge_layout.layer_digests[1], "opt/x/cap", "file", "12", "", "visible", ""]
    done = run_occystrap("search", src, "no-such-file")
    assert done.returncode == 1 and done.stdout == b""
    done = run_occystrap("search", "--regex", src, r"^usr/lib/.*\.so$")
    assert done.returncode == 0
    assert done.stdout.decode().count("\n") == 3 and b"Found 3 match(es)" in done.stderr
    done = run_occystrap("search", "--regex", src, "(")
    assert done.returncode == 2


def test_search_filter_in_process_reports_and_changes_nothing(
    edge_layout: LayoutInfo, tmp_path: Path, run_occystrap: OccystrapRunner
) -> None:
    done = run_occystrap(
        "process", f"ocidir://{edge_layout.path}:latest", f"ocidir://{tmp_path / 'out'}:v1",
        "-f", "search:pattern=cap,script_friendly=true",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().split("\t")[2] == "opt/x/cap"
    _, _, raw = read_layout(tmp_path / "out", "v1")
    assert sha256(raw) == edge_layout.manifest_digest


def test_capabilities_survive_normalize_and_exclude(tmp_path: Path) -> None:
    """The reference tool lost file capabilities (its issue #151)."""
    info = small_image(tmp_path / "src")
    for output in ("ocidir", "tar"):
        dest = (
            f"ocidir://{tmp_path / 'out'}:v1"
            if output == "ocidir"
            else f"tar://{tmp_path / 'out.tar'}"
        )
        process(
            f"ocidir://{info.path}:latest", dest, ["normalize-timestamps", "exclude:pattern=*.pyc"]
        )
        if output == "ocidir":
            manifest, _, _ = read_layout(tmp_path / "out", "v1")
            tars = layer_tars(tmp_path / "out", manifest)
        else:
            with tarfile.open(tmp_path / "out.tar") as outer:
                index = json.load(outer.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
                tars = [outer.extractfile(n).read() for n in index["Layers"]]  # type: ignore[union-attr]
        got = {i.name: i for i, _ in members(tars[0])}
        assert "app/a.pyc" not in got
        assert xattrs(got["app/cap"]) == {"security.capability": CAP_NET_RAW}
        assert got["app/cap"].mtime == 0


def test_null_reporter_finish_is_quiet() -> None:
    finder = Search(SearchOptions(pattern="x"))
    config = ImageConfig.parse(b'{"rootfs":{"type":"layers","diff_ids":[]}}')
    finder.finish(ImageView("i", None, config, ()), NullReporter())
    assert finder.hits == 0


def test_search_registry_source_script_friendly(
    edge_layout: LayoutInfo, registry_plain: Registry, run_occystrap: OccystrapRunner
) -> None:
    """With a registry port in the reference, tab-separated fields stay unambiguous."""
    skopeo(
        "copy",
        *registry_plain.skopeo_args("dest"),
        edge_layout.ref,
        registry_plain.ref("team/edge", "v1"),
    )
    src = f"registry://{registry_plain.host}/team/edge:v1?insecure=true"
    done = run_occystrap("search", "--script-friendly", src, "*.so")
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.decode().splitlines()]
    assert [r[0] for r in rows] == [f"{registry_plain.host}/team/edge:v1"] * 3
    assert [(r[1], r[2], r[6], r[7]) for r in rows] == [
        (edge_layout.layer_digests[0], "usr/lib/libold.so", "deleted", "1"),
        (edge_layout.layer_digests[0], "usr/lib/sub/deep.so", "deleted", "1"),
        (edge_layout.layer_digests[1], "usr/lib/libnew.so", "visible", ""),
    ]
    done = run_occystrap("search", "--json", src, "*.nothing")
    assert done.returncode == 1 and done.stdout == b""
