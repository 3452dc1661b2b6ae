"""Registry image references: ``HOST[:PORT]/NAME[:TAG][@DIGEST]`` with Docker's defaults.

``busybox`` means ``registry-1.docker.io/library/busybox:latest``. The first path component
names a host only when it contains ``.`` or ``:``, is ``localhost``, or has upper-case
letters (Docker's rule); ``docker.io`` and ``index.docker.io`` become ``registry-1.docker.io``
and a one-component Docker Hub name gets ``library/``. Names and tags follow the
distribution grammar. Credentials in the host (``user:pass@host``) are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import InvalidReference
from ...model.digest import Digest

DOCKER_HUB = "registry-1.docker.io"
HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?$")
_MAX_NAME = 255

_CREDENTIALS_HINT = (
    "credentials never go in URIs; use --username/--password, "
    "OCCYSTRAP_USERNAME/OCCYSTRAP_PASSWORD or a docker config.json"
)


@dataclass(frozen=True, slots=True)
class RegistryReference:
    """One image in one registry; ``digest`` wins over ``tag`` when both are set."""

    host: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> RegistryReference:
        return parse(text)

    @property
    def ref(self) -> str:
        """What goes after ``/manifests/``: the digest if known, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or DEFAULT_TAG

    @property
    def name(self) -> str:
        """``HOST/REPOSITORY`` without tag or digest."""
        return f"{self.host}/{self.repository}"

    @property
    def is_docker_hub(self) -> bool:
        return self.host == DOCKER_HUB

    def with_digest(self, digest: Digest) -> RegistryReference:
        return RegistryReference(self.host, self.repository, self.tag, digest)

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out


def parse(text: str) -> RegistryReference:
    """Parse ``text``; raise :class:`InvalidReference` with a one-line reason when malformed."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidReference("empty image reference")
    text = text.strip()
    shown = text[:120]
    if "://" in text:
        raise InvalidReference(f"image reference {shown!r} must not contain a URL scheme")
    _refuse_credentials(text, shown)
    rest, digest = _split_digest(text, shown)
    host, path = _split_host(rest)
    path, tag = _split_tag(path, shown)
    if host is None or host.lower() in HUB_ALIASES:
        host = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    if not _HOST.match(host):
        raise InvalidReference(f"invalid registry host {host[:80]!r} in {shown!r}")
    validate_repository(path, shown)
    if len(host) + 1 + len(path) > _MAX_NAME:
        raise InvalidReference(f"image name in {shown!r} is longer than {_MAX_NAME} characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return RegistryReference(host, path, tag, digest)


def validate_repository(name: str, context: str | None = None) -> str:
    """Check a repository path (``library/busybox``) against the distribution grammar."""
    if not _NAME.match(name):
        where = f" in {context!r}" if context and context != name else ""
        raise InvalidReference(
            f"invalid repository name {name[:120]!r}{where}: use lowercase letters, digits, "
            "and single '.', '_', '__' or '-' separators between '/'-separated components"
        )
    return name


def validate_tag(tag: str) -> str:
    if not _TAG.match(tag):
        raise InvalidReference(
            f"invalid tag {tag[:140]!r}: up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
        )
    return tag


def _refuse_credentials(text: str, shown: str) -> None:
    first = text.split("/", 1)[0]
    if "/" in text and "@" in first:
        raise InvalidReference(
            f"image reference {_mask(shown)!r} holds credentials: {_CREDENTIALS_HINT}"
        )
    if "/" not in text and "@" in text:
        before, _, after = text.partition("@")
        if ":" in before and not _is_digest(after):
            raise InvalidReference(
                f"image reference {_mask(shown)!r} holds credentials: {_CREDENTIALS_HINT}"
            )


def _is_digest(text: str) -> bool:
    try:
        Digest.parse(text)
    except InvalidReference:
        return False
    return True


def _mask(text: str) -> str:
    """Hide whatever precedes '@' in the host part, so a password never reaches a message."""
    first, sep, rest = text.partition("/")
    if "@" in first:
        return "***@" + first.rsplit("@", 1)[1] + sep + rest
    return text


def _split_digest(text: str, shown: str) -> tuple[str, Digest | None]:
    if "@" not in text:
        return text, None
    rest, _, raw = text.partition("@")
    try:
        return rest, Digest.parse(raw)
    except InvalidReference:
        raise InvalidReference(f"invalid digest {raw[:100]!r} in {shown!r}") from None


def _split_host(text: str) -> tuple[str | None, str]:
    if "/" not in text:
        return None, text
    first, rest = text.split("/", 1)
    if "." in first or ":" in first or first == "localhost" or first != first.lower():
        return first, rest
    return None, text


def _split_tag(path: str, shown: str) -> tuple[str, str | None]:
    last = path.rsplit("/", 1)[-1]
    if ":" not in last:
        return path, None
    name, _, tag = path.rpartition(":")
    if not _TAG.match(tag):
        raise InvalidReference(f"invalid tag {tag[:140]!r} in {shown!r}")
    return name, tag
