"""Independent judges of what occystrap wrote, one per kind of output.

Every judge checks an output with evidence that shares no code with occystrap: skopeo (which
verifies digests and diff_ids while it copies), ``umoci stat``/``umoci unpack``,
``oci-image-tool validate``, a Docker-API daemon (podman) that loads or holds the image, the OCI
JSON schemas, and sha256 over the bytes. A judge raises AssertionError saying what is wrong.

Verdicts are cached by content: an output whose bytes (every file, mode and link) equal those of
an output already judged against the same expectations gets the same verdict without running the
tools again. That keeps the matrix fast without weakening it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tarfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conformance.evidence import (
    CHUNK,
    DOCKER_LIST,
    OCI_INDEX,
    OciImage,
    fingerprint,
    hexof,
    read_layout,
    sha256_bytes,
    sha256_file,
    skopeo_to_oci,
    snapshot,
    tree_diff,
    validate_layout_documents,
)
from lab import schemas
from lab.daemon import Daemon
from lab.edgecase import EXPECT, check_rootfs
from lab.registry import Registry, http_get
from lab.tools import require, run, umoci

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST))


@dataclass(frozen=True)
class Expect:
    """What every output written from one source must show."""

    config_digest: str
    diff_ids: tuple[str, ...]
    #: the config document (canonical JSON), for copies a judge converted to OCI itself
    config_json: str = ""
    #: RepoTags a tarball / dir manifest must carry; None: not checked
    repo_tags: tuple[str, ...] | None = None
    #: stored layer blobs that must be kept byte for byte (compressed sources, compressed sinks)
    layer_digests: tuple[str, ...] | None = None
    #: the manifest digest that must be kept (nothing about the manifest had to change)
    manifest_digest: str | None = None


def require_module(factory: str | None, what: str) -> None:
    """Skip (fail under CI=true) when the module behind a TRANSPORTS factory does not exist."""
    assert factory is not None, f"{what}: TRANSPORTS declares no factory"
    module = factory.partition(":")[0]
    if importlib.util.find_spec(module) is None:
        message = f"{what}: {module} is declared in TRANSPORTS but does not exist yet"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def check_image(got: OciImage, expect: Expect, what: str, converted: bool = False) -> None:
    """``converted``: skopeo turned a Docker manifest into an OCI one and re-serialised the
    config on the way, so only the config's content can be compared."""
    if converted and got.config_digest != expect.config_digest:
        assert got.config == json.loads(expect.config_json), f"{what}: config content changed"
    else:
        assert got.config_digest == expect.config_digest, f"{what}: config {got.config_digest}"
    assert got.diff_ids == expect.diff_ids, f"{what}: diff_ids {got.diff_ids}"


def _member_digests(archive: Path) -> tuple[list[str], dict[str, str], dict[str, bytes]]:
    """Names, sha256 of every regular member (symlinks resolved) and the small JSON members."""
    names: list[str] = []
    digests: dict[str, str] = {}
    docs: dict[str, bytes] = {}
    links: dict[str, str] = {}
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            names.append(member.name)
            if member.issym():
                links[member.name] = os.path.normpath(
                    os.path.join(os.path.dirname(member.name), member.linkname)
                )
            if not member.isfile():
                continue
            f = tar.extractfile(member)
            assert f is not None
            h = hashlib.sha256()
            while chunk := f.read(CHUNK):
                h.update(chunk)
                if member.name.endswith(".json") or member.name == "repositories":
                    docs[member.name] = docs.get(member.name, b"") + chunk
            digests[member.name] = "sha256:" + h.hexdigest()
    for name, target in links.items():
        if target in digests:
            digests[name] = digests[target]
    return names, digests, docs


# -- the judges ----------------------------------------------------------------------------------


class Judges:
    """The judges of one test module. ``podman`` gives the daemon that loads tarballs."""

    def __init__(self, work: Path, podman: Callable[[], Daemon]) -> None:
        self.work = work
        self._podman = podman
        self._done: set[tuple[Any, ...]] = set()
        self.runs = 0  # judge runs that were not answered from the cache

    def _cached(self, key: tuple[Any, ...]) -> bool:
        if key in self._done:
            return True
        self.runs += 1
        return False

    def _scratch(self, name: str) -> Path:
        path = self.work / f"judge-{self.runs}-{name}"
        shutil.rmtree(path, ignore_errors=True)
        return path

    def tarball(self, archive: Path, expect: Expect) -> None:
        """A docker-save tarball: structure, hashes, skopeo, and a load into podman."""
        key = ("tar", fingerprint(archive), expect)
        if self._cached(key):
            return
        names, digests, docs = _member_digests(archive)
        assert len(names) == len(set(names)), f"duplicate members: {names}"
        manifest = json.loads(docs["manifest.json"])
        assert isinstance(manifest, list) and len(manifest) == 1, manifest
        entry = manifest[0]
        assert entry["Config"] == f"{hexof(expect.config_digest)}.json", entry
        assert digests[entry["Config"]] == expect.config_digest
        schemas.validate("config", docs[entry["Config"]])
        layers = [digests[name] for name in entry["Layers"]]
        assert tuple(layers) == expect.diff_ids, f"layer.tar hashes {layers}"
        tags = entry.get("RepoTags") or []
        if expect.repo_tags is not None:
            assert tuple(tags) == expect.repo_tags, f"RepoTags {tags}"
        if tags:
            repositories = json.loads(docs["repositories"])
            for tag in tags:
                repo, _, name = tag.rpartition(":")
                assert repo in repositories and name in repositories[repo], repositories
        got = skopeo_to_oci(f"docker-archive:{archive}", self._scratch("skopeo"))
        check_image(got, expect, f"skopeo copy docker-archive:{archive}", converted=True)
        self._podman_load(archive, expect, tags)
        self._done.add(key)

    def _podman_load(self, archive: Path, expect: Expect, tags: list[str]) -> None:
        daemon = self._podman()
        resp = daemon.load(archive)
        assert resp.status == 200, f"podman load: {resp.status} {resp.body[:500]!r}"
        assert b'"error' not in resp.body, resp.body[:500]
        inspected = inspect(daemon, expect.config_digest)
        assert inspected["Id"] == expect.config_digest, inspected["Id"]
        assert tuple(inspected["RootFS"]["Layers"]) == expect.diff_ids
        known = inspected.get("RepoTags") or []
        for tag in tags:
            assert any(t == tag or t.endswith("/" + tag) for t in known), (tag, known)

    def ocidir(self, layout: Path, ref: str, expect: Expect) -> OciImage:
        """An OCI layout: schemas, digests, skopeo, umoci stat, oci-image-tool validate.

        Besides ``oci-layout``, ``index.json`` and ``blobs/`` only the sink's lock file (kept
        so that several writers can share a layout) may be there."""
        ours = read_layout(layout, ref)
        check_image(ours, expect, f"{layout}:{ref}")
        if expect.layer_digests is not None:
            assert ours.layer_digests == expect.layer_digests, "stored blobs were not kept"
        if expect.manifest_digest is not None:
            assert ours.manifest_digest == expect.manifest_digest, "the manifest was rewritten"
        leftovers = sorted(
            set(os.listdir(layout)) - {"oci-layout", "index.json", "blobs", "index.json.lock"}
        )
        assert not leftovers, f"{layout}: unexpected files {leftovers}"
        key = ("ocidir", fingerprint(layout), ref, expect)
        if self._cached(key):
            return ours
        validate_layout_documents(layout)
        got = skopeo_to_oci(f"oci:{layout}:{ref}", self._scratch("skopeo"))
        check_image(got, expect, f"skopeo copy oci:{layout}:{ref}")
        assert got.layer_digests == ours.layer_digests  # skopeo kept the blobs it verified
        umoci("stat", "--image", f"{layout}:{ref}")
        if not any(x["mediaType"].endswith("+zstd") for x in ours.manifest["layers"]):
            # oci-image-tool predates zstd layers
            run(
                [
                    require("oci-image-tool"),
                    "validate",
                    "--type",
                    "image",
                    "--ref",
                    f"name={ref}",
                    layout,
                ]
            )
        self._done.add(key)
        return ours

    def directory(self, out: Path, expect: Expect) -> list[dict[str, Any]]:
        """A dir:// store: hashes, manifest/catalog agreement, skopeo on a repacked tarball.

        Returns the catalog entries (with their ``rootfs`` when expanded)."""
        catalog = json.loads((out / "catalog.json").read_text())
        entries = [e for tags in catalog.values() for e in tags.values()]
        assert len(entries) == 1, catalog
        entry = entries[0]
        assert not list(out.rglob(".tmp-*")), "temporary files left behind"
        key = ("dir", fingerprint(out), expect)
        if self._cached(key):
            return entries
        manifest = json.loads((out / entry["manifest"]).read_text())
        assert isinstance(manifest, list) and len(manifest) == 1, manifest
        m = manifest[0]
        assert m["Config"] == entry["config"] and m["Layers"] == entry["layers"], (m, entry)
        assert sha256_file(out / m["Config"]) == expect.config_digest
        assert m["Config"] == f"{hexof(expect.config_digest)}.json"
        schemas.validate("config", out / m["Config"])
        hashes = tuple(sha256_file(out / layer) for layer in m["Layers"])
        assert hashes == expect.diff_ids, f"layer files hash to {hashes}"
        assert [layer.split("/")[0] for layer in m["Layers"]] == [hexof(d) for d in hashes]
        if expect.repo_tags is not None:
            assert tuple(m.get("RepoTags") or ()) == expect.repo_tags, m.get("RepoTags")
        packed = self._scratch("repacked.tar")
        with tarfile.open(packed, "w") as tar:
            tar.add(out / m["Config"], m["Config"])
            for layer in m["Layers"]:
                tar.add(out / layer, layer)
            tar.add(out / entry["manifest"], "manifest.json")
        got = skopeo_to_oci(f"docker-archive:{packed}", self._scratch("skopeo"))
        check_image(got, expect, f"skopeo copy of {out} repacked", converted=True)
        self._done.add(key)
        return entries

    def rootfs(self, root: Path, reference: Reference) -> None:
        """An expanded root filesystem, compared file by file with ``umoci unpack``'s."""
        problems = tree_diff(snapshot(root, reference.skip), reference.tree)
        assert not problems, f"{root} differs from umoci unpack:\n  " + "\n  ".join(problems[:40])
        if reference.edge:
            assert check_rootfs(root, spec_only=reference.spec_only) == []

    def bundle(self, bundle: Path, reference: Reference) -> None:
        """An OCI runtime bundle: config.json against the runtime schema and umoci's, rootfs."""
        config = json.loads((bundle / "config.json").read_text())
        schemas.validate("runtime", config)
        assert config["root"]["path"] in ("rootfs", str(bundle / "rootfs")), config["root"]
        ours, theirs = config["process"], reference.runtime_config["process"]
        for field in ("args", "cwd", "user"):
            assert ours.get(field) == theirs.get(field), (field, ours.get(field), theirs.get(field))
        env, wanted = _runtime_env(ours, bundle / "rootfs"), _runtime_env(theirs, bundle / "rootfs")
        assert env == wanted, f"env {env} != umoci's {wanted}"
        self.rootfs(bundle / "rootfs", reference)

    def registry(self, reg: Registry, repo: str, tag: str, expect: Expect) -> None:
        """A pushed image: the registry's digest of the raw manifest, schemas, skopeo's copy."""
        url = f"{reg.url}/v2/{repo}/manifests/{tag}"
        status, headers, raw = http_get(url, headers={"Accept": ACCEPT})
        assert status == 200, f"GET {url}: {status} {raw[:300]!r}"
        digest = sha256_bytes(raw)
        assert headers["Docker-Content-Digest"] == digest
        manifest = json.loads(raw)
        if expect.manifest_digest is not None:
            assert digest == expect.manifest_digest, "the manifest was rewritten"
        if manifest.get("mediaType", OCI_MANIFEST) == OCI_MANIFEST:
            schemas.validate("manifest", manifest)
        assert manifest["config"]["digest"] == expect.config_digest
        blob_url = f"{reg.url}/v2/{repo}/blobs/{expect.config_digest}"
        status, _, config = http_get(blob_url)
        assert status == 200 and sha256_bytes(config) == expect.config_digest
        schemas.validate("config", config)
        got = skopeo_to_oci(
            f"docker://{reg.host}/{repo}:{tag}", self._scratch("skopeo"), "--src-tls-verify=false"
        )
        converted = manifest.get("mediaType") == DOCKER_MANIFEST
        check_image(got, expect, f"skopeo copy docker://{reg.host}/{repo}:{tag}", converted)
        layers = tuple(layer["digest"] for layer in manifest["layers"])
        assert got.layer_digests == layers
        if expect.layer_digests is not None:
            assert layers == expect.layer_digests, "stored blobs were not kept"

    def daemon(self, daemon: Daemon, name: str, expect: Expect) -> None:
        """An image written into a daemon: its Id is the config digest, its layers the diff_ids."""
        inspected = inspect(daemon, name)
        assert inspected["Id"] == expect.config_digest, inspected["Id"]
        assert tuple(inspected["RootFS"]["Layers"]) == expect.diff_ids
        known = inspected.get("RepoTags") or []
        assert any(t == name or t.endswith("/" + name) for t in known), (name, known)


def _runtime_env(process: dict[str, Any], rootfs: Path) -> list[str]:
    """The environment runc gives the process: when HOME is unset, runc sets the user's home
    from the rootfs' /etc/passwd (``/`` without an entry). umoci asks for a terminal (and so
    sets TERM); a bundle for ``runc run`` need not, so TERM is left out of the comparison."""
    env = [e for e in process["env"] if not e.startswith("TERM=")]
    if not any(e.startswith("HOME=") for e in env):
        home = "/"
        passwd = rootfs / "etc" / "passwd"
        for line in passwd.read_text().splitlines() if passwd.is_file() else ():
            fields = line.split(":")
            if len(fields) >= 6 and fields[2] == str(process["user"]["uid"]):
                home = fields[5] or "/"
                break
        env.append(f"HOME={home}")
    return env


def inspect(daemon: Daemon, name: str) -> dict[str, Any]:
    resp = daemon.request("GET", f"/v1.41/images/{urllib.parse.quote(name, safe='')}/json")
    assert resp.status == 200, f"{daemon.kind} inspect {name}: {resp.status} {resp.body[:300]!r}"
    doc: dict[str, Any] = resp.json()
    return doc


# -- the reference unpack ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """``umoci unpack`` of a fixture image: the tree every expanded output must equal."""

    tree: dict[str, dict[str, Any]]
    runtime_config: dict[str, Any]
    skip: tuple[str, ...]
    edge: bool  # an edge-case image: also check lab.edgecase.EXPECT
    spec_only: bool  # the image has the entries of EXPECT.spec_only


def umoci_reference(
    layout: Path, ref: str, work: Path, edge: bool, spec_only: bool = True
) -> Reference:
    bundle = work / "umoci-bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    umoci("unpack", "--image", f"{layout}:{ref}", bundle)
    # where umoci knowingly departs from the spec (lab.edgecase.EXPECT.spec_only)
    skip = tuple(EXPECT.spec_only) if edge else ()
    tree = snapshot(bundle / "rootfs", skip)
    config = json.loads((bundle / "config.json").read_text())
    return Reference(tree, config, skip, edge, spec_only)
