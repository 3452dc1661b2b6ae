"""Pushes remember which repositories they put each blob in (transports/registry/locations.py),
so a later push to another repository of the same registry mounts the blob instead of
uploading it: judged by the lab registry's own access log."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import quote

import test_registry
from test_registry import Runner, raw_manifest, requests_in_log, sha256

from lab.ocilayout import LayoutInfo
from lab.registry import Registry
from occystrap import api
from occystrap.model.digest import Digest
from occystrap.transports.base import RegistrySettings, RunContext
from occystrap.transports.registry.locations import KEEP, MAX_AGE, BlobLocations

env = test_registry.env  # the fixtures: no credentials or caches of this machine
occ = test_registry.occ
BLOB = Digest.parse("sha256:" + "ab" * 32)


def _blobs(layout: LayoutInfo) -> list[str]:
    return [*layout.layer_digests, layout.config_digest]


def _to(reg: Registry, since: int, repo: str) -> list[tuple[str, str, int]]:
    return [r for r in requests_in_log(reg, since) if r[1].startswith(f"/v2/{repo}/blobs/")]


def _push(occ: Runner, layout: LayoutInfo, reg: Registry, repo: str) -> list[tuple[str, str, int]]:
    since = reg.log_file.stat().st_size
    occ("--insecure", "process", f"ocidir://{layout.path}", f"registry://{reg.host}/{repo}:v1")
    assert sha256(raw_manifest(reg, repo, "v1")) == layout.manifest_digest
    return _to(reg, since, repo)


def test_a_second_push_mounts_what_the_first_put_there(
    occ: Runner, registry_plain: Registry, edge_layout: LayoutInfo
) -> None:
    reg = registry_plain
    first = _push(occ, edge_layout, reg, "loc/first")
    assert [r for r in first if r[0] == "PUT"], first  # the first push uploads
    second = _push(occ, edge_layout, reg, "loc/second")
    mounts = [u for m, u, s in second if m == "POST" and "from=loc%2Ffirst" in u and s == 201]
    assert len(mounts) == len(_blobs(edge_layout)), second
    assert not [r for r in second if r[0] in ("PATCH", "PUT")], second  # no byte sent
    store = Path(occ.env["XDG_CACHE_HOME"]) / "occystrap" / "locations" / quote(reg.host, safe="")
    noted = (store / ("sha256-" + edge_layout.config_digest.split(":")[1])).read_text()
    assert noted.splitlines() == ["loc/first", "loc/second"]


def test_a_stale_location_costs_nothing(
    occ: Runner, registry_plain: Registry, edge_layout: LayoutInfo
) -> None:
    reg = registry_plain
    store = Path(occ.env["XDG_CACHE_HOME"]) / "occystrap" / "locations" / quote(reg.host, safe="")
    store.mkdir(parents=True)
    for digest in _blobs(edge_layout):  # blobs said to be where they never were
        (store / digest.replace(":", "-")).write_text("nowhere/at-all\n")
    pushed = _push(occ, edge_layout, reg, "loc/stale")
    tried = [s for m, u, s in pushed if m == "POST" and "from=nowhere%2Fat-all" in u]
    assert tried and set(tried) == {202}, pushed  # refused: the upload goes on
    assert len([r for r in pushed if r[0] == "PUT" and r[2] == 201]) == len(tried)


def test_locations_can_be_switched_off(
    registry_plain: Registry, edge_layout: LayoutInfo, tmp_path: Path
) -> None:
    reg = registry_plain
    settings = RegistrySettings(insecure_hosts=(reg.host,), locations_dir="off")
    for repo in ("loc/off-one", "loc/off-two"):
        since = reg.log_file.stat().st_size
        api.process(
            f"ocidir://{edge_layout.path}",
            f"registry://{reg.host}/{repo}:v1",
            ctx=RunContext(registry=settings),
        )
        requests = _to(reg, since, repo)
        assert not [u for m, u, s in requests if "mount=" in u], requests
        assert [r for r in requests if r[0] == "PUT"], requests
    assert not (Path(os.environ["XDG_CACHE_HOME"]) / "occystrap" / "locations").exists()


def test_the_store_keeps_recent_valid_names_and_forgets_old_files(tmp_path: Path) -> None:
    places = BlobLocations(tmp_path, "reg.example:5000")
    assert places.where(BLOB, besides="a/b") is None
    places.note(BLOB, "team/one")
    places.note(BLOB, "team/two")
    assert places.where(BLOB, besides="x/y") == "team/two"
    assert places.where(BLOB, besides="team/two") == "team/one"
    places.note(BLOB, "Not A Repo/..")  # outside the grammar: never written
    path = tmp_path / "reg.example%3A5000" / f"sha256-{'ab' * 32}"
    with open(path, "a") as f:
        f.write("Bad Name\n")  # nor used when found
    assert places.where(BLOB, besides="x/y") == "team/two"
    for i in range(600):
        places.note(BLOB, f"many/r{i:03d}")
    names = path.read_text().splitlines()
    assert "team/one" not in names and len(names) <= KEEP + 4096 // 10  # rewritten short
    assert names[-1] == "many/r599" == places.where(BLOB, besides="x/y")
    old = time.time() - MAX_AGE - 60
    os.utime(path, (old, old))
    places.sweep()
    assert not path.exists()
    off = BlobLocations(None, "reg.example")
    off.note(BLOB, "team/one")
    assert off.where(BLOB, besides="x/y") is None
