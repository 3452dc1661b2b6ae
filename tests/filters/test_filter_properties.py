"""Property tests over generated layer trees: normalize-timestamps, exclude and search.

Trees are written by Python's tarfile (PAX) and the results read back by it, so the judge
is independent of occystrap's tar code. Glob matching is judged by a small oracle written
here from the documented semantics (fnmatch on one path component at a time).
"""

from __future__ import annotations

import fnmatch
import json
import tarfile
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_filters import Collect, exclude, members, normalize, run_chain, tarspec_norm, view, xattrs

from lab import tarspec
from lab.edgecase import CAP_NET_RAW
from lab.tarspec import TarSpec, directory, fifo, file, hardlink, opaque, symlink, whiteout
from occystrap.filters.base import ImageView
from occystrap.filters.options import SearchOptions
from occystrap.filters.search import Search
from occystrap.model.config import ImageConfig

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COMPONENTS = ["a", "b", ".git", "x.pyc", "y.txt", "Ünï", "l" * 110]
TIME_RECORDS = {"atime", "ctime", "mtime", "LIBARCHIVE.creationtime"}

# -- the oracle ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    """A glob and what it means, restated without occystrap's glob code."""

    glob: str
    kind: str  # "component" | "path" | "below" | "top"
    arg: str

    def hits(self, path: str) -> bool:
        """search: does the glob match ``path`` itself?"""
        parts = path.split("/")
        if self.kind == "component":
            return fnmatch.fnmatchcase(parts[-1], self.arg)
        if self.kind == "path":
            return path == self.arg
        if self.kind == "below":
            return path.startswith(self.arg + "/")
        return path == self.arg  # top

    def removes(self, path: str) -> bool:
        """exclude: does the glob match ``path`` or one of its parents?"""
        parts = path.split("/")
        if self.kind == "component":
            return any(fnmatch.fnmatchcase(p, self.arg) for p in parts)
        if self.kind == "path":
            return path == self.arg or path.startswith(self.arg + "/")
        if self.kind == "below":
            return path.startswith(self.arg + "/")
        return parts[0] == self.arg  # top


PATTERNS = [
    Pattern("*.pyc", "component", "*.pyc"),
    Pattern("*.txt", "component", "*.txt"),
    Pattern(".git", "component", ".git"),
    Pattern("**/.git", "component", ".git"),
    Pattern("b*", "component", "b*"),
    Pattern("a/b", "path", "a/b"),
    Pattern("a/**", "below", "a"),
    Pattern("/a", "top", "a"),
    Pattern("Ünï/**", "below", "Ünï"),
]


def subject(path: str) -> str:
    """What an entry stands for: a whiteout's target, an opaque marker's directory."""
    head, _, base = path.rpartition("/")
    if base == ".wh..wh..opq":
        return head
    if base.startswith(".wh."):
        return f"{head}/{base[4:]}" if head else base[4:]
    return path


# -- generated layers ------------------------------------------------------------------------


@st.composite
def layers(draw: st.DrawFn) -> list[TarSpec]:
    paths = draw(
        st.sets(
            st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=3).map(tuple),
            min_size=1,
            max_size=14,
        )
    )
    every = set(paths)
    for p in paths:  # parents exist
        every.update(p[:i] for i in range(1, len(p)))
    specs: list[TarSpec] = []
    files: list[str] = []
    for p in sorted(every):
        name = "/".join(p)
        dot = draw(st.booleans())
        raw = f"./{name}" if dot else name
        mtime = draw(st.one_of(st.integers(0, 2_000_000_000), st.integers(8**11, 2**34)))
        if any(q[: len(p)] == p and q != p for q in every):
            specs.append(directory(raw, mtime=mtime, uid=draw(st.integers(0, 3_000_000))))
            if draw(st.integers(0, 5)) == 0:
                specs.append(opaque(raw))
            continue
        kind = draw(st.sampled_from(["file", "file", "symlink", "hardlink", "fifo"]))
        if kind == "hardlink" and files:
            target = draw(st.sampled_from(files))
            specs.append(hardlink(raw, draw(st.sampled_from([target, f"./{target}"]))))
        elif kind == "symlink":
            specs.append(symlink(raw, draw(st.sampled_from(["a", "../x.pyc", "/etc/y.txt"]))))
        elif kind == "fifo":
            specs.append(fifo(raw))
        else:
            pax: dict[str, str] = {}
            if draw(st.booleans()):
                pax["atime"] = f"{draw(st.integers(0, 2**31))}.5"
                pax["ctime"] = str(draw(st.integers(0, 2**31)))
            if draw(st.integers(0, 4)) == 0:
                pax["mtime"] = f"{mtime}.25"
            caps: dict[str, bytes] = {}
            if draw(st.booleans()):
                caps["security.capability"] = CAP_NET_RAW
            if draw(st.booleans()):
                caps["user.note"] = draw(st.binary(max_size=8))
            spec = file(
                raw,
                draw(st.binary(max_size=64)),
                draw(st.sampled_from([0o644, 0o755, 0o4755, 0o000])),
                uid=draw(st.integers(0, 3_000_000)),
                gid=draw(st.integers(0, 70_000)),
                mtime=mtime,
                xattrs=caps,
                pax=pax,
            )
            specs.append(spec)
            files.append(name)
    for target in draw(st.lists(st.sampled_from(sorted("/".join(p) for p in every)), max_size=3)):
        specs.append(whiteout(target))
    return specs


def described(data: bytes) -> list[tuple[str, dict[str, Any], bytes]]:
    """(normalized name, attributes, content) per member, attributes as the stdlib reads them."""
    out = []
    for info, body in members(data):
        attrs = {
            "type": info.type,
            "mode": info.mode,
            "uid": info.uid,
            "gid": info.gid,
            "linkname": tarspec_norm(info.linkname) if info.islnk() else info.linkname,
            "xattrs": xattrs(info),
            "mtime": info.mtime,
            "records": {
                k: v
                for k, v in info.pax_headers.items()
                if k not in TIME_RECORDS | {"path", "linkpath", "size", "uid", "gid", "hdrcharset"}
            },
        }
        out.append((tarspec_norm(info.name), attrs, body))
    return out


def without_time(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if k != "mtime"}


# -- properties ------------------------------------------------------------------------------


@SETTINGS
@given(layers(), st.integers(0, 8**11 - 1))
def test_normalize_idempotent_and_only_touches_times(specs: list[TarSpec], ts: int) -> None:
    src = tarspec.tar_bytes(specs)
    once, _ = run_chain(src, [normalize(ts)])
    twice, changed = run_chain(once, [normalize(ts)])
    assert twice == once and not changed
    before, after = described(src), described(once)
    assert len(before) == len(after)
    for (n1, a1, b1), (n2, a2, b2) in zip(before, after, strict=True):
        assert (n1, without_time(a1), b1) == (n2, without_time(a2), b2)
        assert a2["mtime"] == ts


@SETTINGS
@given(
    layers(),
    st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3, unique=True),
    st.integers(0, 10**9),
)
def test_normalize_and_exclude_commute(
    specs: list[TarSpec], patterns: list[Pattern], ts: int
) -> None:
    src = tarspec.tar_bytes(specs)
    globs = [p.glob for p in patterns]
    first, _ = run_chain(src, [normalize(ts), exclude(*globs)])
    second, _ = run_chain(src, [exclude(*globs), normalize(ts)])
    assert first == second
    staged, _ = run_chain(run_chain(src, [exclude(*globs)])[0], [normalize(ts)])
    assert staged == first


@SETTINGS
@given(layers(), st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3, unique=True))
def test_exclude_removes_exactly_the_matching_paths(
    specs: list[TarSpec], patterns: list[Pattern]
) -> None:
    src = tarspec.tar_bytes(specs)
    out, changed = run_chain(src, [exclude(*[p.glob for p in patterns])])

    def gone(path: str) -> bool:
        target = subject(path)
        return bool(target) and any(p.removes(target) for p in patterns)

    before = described(src)
    expected = [(n, a, b) for n, a, b in before if not gone(n)]
    after = described(out)
    assert [n for n, _, _ in after] == [n for n, _, _ in expected]
    assert changed == (len(expected) != len(before))
    if not changed:
        assert out == src
    files = {n: (a, b) for n, a, b in before if a["type"] in (tarfile.REGTYPE, tarfile.AREGTYPE)}
    holder: dict[str, str] = {}  # removed file -> the link that now carries it
    for (name, old, body), (_, new, new_body) in zip(expected, after, strict=True):
        target = old["linkname"]
        if old["type"] == tarfile.LNKTYPE and gone(target):
            if target in holder:  # a later link points at the new holder
                assert new["type"] == tarfile.LNKTYPE and new["linkname"] == holder[target]
            else:  # the first link becomes the file, with the file's metadata and content
                holder[target] = name
                file_attrs, file_body = files[target]
                assert (new, new_body) == (file_attrs, file_body)
            continue
        assert (new, new_body) == (old, body), name
    assert len({n for n, _, _ in after}) == len(after) or len({n for n, _, _ in before}) != len(
        before
    )


@SETTINGS
@given(layers(), st.sampled_from(PATTERNS))
def test_search_finds_exactly_the_matching_paths(specs: list[TarSpec], pattern: Pattern) -> None:
    src = tarspec.tar_bytes(specs)
    finder = Search(SearchOptions(pattern=pattern.glob, json=True))
    out, changed = run_chain(src, [finder], view())
    assert out == src and not changed
    reporter = Collect()
    config = ImageConfig.parse(b'{"rootfs":{"type":"layers","diff_ids":[]}}')
    layer = {"digest": "sha256:" + "0" * 64, "diff_id": None, "size": len(src), "media_type": "x"}
    finder.finish(ImageView("img", None, config, (layer,)), reporter)
    found = [json.loads(line)["path"] for line in reporter.results]
    expected = [
        n for n, _, _ in described(src) if ".wh." not in n.rpartition("/")[2] and pattern.hits(n)
    ]
    assert found == expected
