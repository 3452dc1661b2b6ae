"""``manifest.json`` and ``repositories`` of docker-save archives: parse, pick, write.

``manifest.json`` is a list with one entry per image::

    [{"Config": "<cfg>.json", "RepoTags": ["host:5000/org/app:v1"], "Layers": ["<id>/layer.tar"]}]

RepoTags keep the full repository name (registry host included). Matching a wanted
``NAME[:TAG]`` ignores the prefixes tools add or drop on their own (``docker.io/``,
``docker.io/library/``, ``localhost/``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import ImageNotFound, InvalidOption, MalformedInput
from ...model.jsonfile import dump_canonical, load_json

#: More entries or layers than this is not an archive any tool writes.
MAX_IMAGES = 10_000
MAX_LAYERS = 10_000
MAX_PATH = 4096

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/\[\]-]*$")
_PREFIXES = (
    "docker.io/library/",
    "index.docker.io/library/",
    "docker.io/",
    "index.docker.io/",
    "localhost/",
)


@dataclass(frozen=True)
class ArchiveEntry:
    """One image of ``manifest.json``; paths exactly as written in the archive."""

    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]
    layer_sources: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.repo_tags[0] if self.repo_tags else self.config


def parse_manifest_json(raw: bytes, what: str) -> list[ArchiveEntry]:
    """The entries of ``manifest.json``; MalformedInput with one line when it is not one."""
    doc = load_json(raw, f"manifest.json in {what}")
    if not isinstance(doc, list):
        raise MalformedInput(f"manifest.json in {what} is not a JSON list")
    if not doc:
        raise MalformedInput(f"manifest.json in {what} lists no images")
    if len(doc) > MAX_IMAGES:
        raise MalformedInput(
            f"manifest.json in {what} lists {len(doc)} images (limit {MAX_IMAGES})"
        )
    return [_entry(item, i, what) for i, item in enumerate(doc)]


def _entry(item: Any, i: int, what: str) -> ArchiveEntry:
    where = f"manifest.json entry {i} in {what}"
    if not isinstance(item, dict):
        raise MalformedInput(f"{where} is not a JSON object")
    config = item.get("Config")
    if not isinstance(config, str) or not _is_path(config):
        raise MalformedInput(f"{where} has no valid 'Config' path")
    tags = item.get("RepoTags") or []
    if not isinstance(tags, list) or not all(
        isinstance(t, str) and 0 < len(t) <= 512 for t in tags
    ):
        raise MalformedInput(f"{where} has a malformed 'RepoTags' list")
    layers = item.get("Layers")
    if layers is None:
        layers = []
    if not isinstance(layers, list) or not all(_is_path(p) for p in layers):
        raise MalformedInput(f"{where} has a malformed 'Layers' list")
    if len(layers) > MAX_LAYERS:
        raise MalformedInput(f"{where} lists {len(layers)} layers (limit {MAX_LAYERS})")
    sources = item.get("LayerSources")
    return ArchiveEntry(
        config, tuple(tags), tuple(layers), sources if isinstance(sources, dict) else {}
    )


def _is_path(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_PATH and "\0" not in value


def split_repo_tag(text: str) -> tuple[str, str | None]:
    """``myreg:5000/org/app:v1`` -> (``myreg:5000/org/app``, ``v1``); no tag -> None."""
    text = text.split("@", 1)[0]
    repo, sep, tag = text.rpartition(":")
    if not sep or "/" in tag or not repo:
        return text, None
    return repo, tag


def _normal(text: str) -> tuple[str, str]:
    name, tag = split_repo_tag(text)
    low = name.lower()
    for prefix in _PREFIXES:
        if low.startswith(prefix):
            name = name[len(prefix) :]
            break
    if name.startswith("library/") and name.count("/") == 1:
        name = name[len("library/") :]
    return name, tag or "latest"


def tag_matches(wanted: str, repo_tag: str) -> bool:
    """Does ``repo_tag`` (from an archive) name the image the user asked for with ``wanted``?"""
    return _normal(wanted) == _normal(repo_tag)


@dataclass(frozen=True)
class Choice:
    index: int
    entry: ArchiveEntry
    repo_tag: str | None
    count: int


def choose(
    entries: Sequence[ArchiveEntry], image: str | None, index: int | None, what: str
) -> Choice:
    """Pick the image named by ``image`` (a RepoTag) or ``index``; else the first one."""
    count = len(entries)
    if image is not None and index is not None:
        raise InvalidOption(f"{what}: give either image= or index=, not both")
    if index is not None:
        if not 0 <= index < count:
            raise ImageNotFound(f"{what} holds {count} image(s); index={index} is out of range")
        entry = entries[index]
        return Choice(index, entry, entry.repo_tags[0] if entry.repo_tags else None, count)
    if image is not None:
        for i, entry in enumerate(entries):
            for tag in entry.repo_tags:
                if tag_matches(image, tag):
                    return Choice(i, entry, tag, count)
        known = ", ".join(t for e in entries for t in e.repo_tags)[:400] or "none"
        raise ImageNotFound(f"{what} holds no image tagged {image!r} (tags: {known})")
    entry = entries[0]
    return Choice(0, entry, entry.repo_tags[0] if entry.repo_tags else None, count)


# -- writing ---------------------------------------------------------------------------


def output_repo_tag(text: str) -> str:
    """A RepoTag to write: ``NAME:TAG`` (``:latest`` added when the tag is missing)."""
    name, tag = split_repo_tag(text.strip())
    if "@" in text or not _NAME.match(name) or name.endswith(("/", ":")) or "//" in name:
        raise InvalidOption(f"bad tag {text!r}; expected NAME[:TAG], e.g. team/app:v1")
    if tag is None:
        tag = "latest"
    if not _TAG.match(tag):
        raise InvalidOption(f"bad tag {tag!r} in {text!r}")
    return f"{name}:{tag}"


def render_manifest_json(config: str, repo_tags: Sequence[str], layers: Sequence[str]) -> bytes:
    entry = {"Config": config, "RepoTags": list(repo_tags) or None, "Layers": list(layers)}
    return dump_canonical([entry])


def render_repositories(repo_tags: Sequence[str], top_layer_id: str) -> bytes:
    """``{"repo": {"tag": "<top layer dir>"}}``, the pre-1.10 index docker still writes."""
    repos: dict[str, dict[str, str]] = {}
    for repo_tag in repo_tags:
        name, tag = split_repo_tag(repo_tag)
        repos.setdefault(name, {})[tag or "latest"] = top_layer_id
    return dump_canonical(repos)
