"""The whole exception tree of occystrap.

Every error the library raises on purpose derives from :class:`OccystrapError`,
carries a one-line message meant for an operator, and never contains a secret.
The CLI prints ``str(error)`` on one line; usage errors exit 2, all others 1::

    OccystrapError
    ├── UsageError                      (exit status 2)
    │   ├── InvalidReference (ValueError)
    │   │   └── UnknownScheme
    │   └── InvalidOption (ValueError)
    ├── NotFound
    │   ├── ImageNotFound
    │   ├── BlobNotFound
    │   └── PlatformNotFound
    ├── UnsupportedFormat               (pre-1.10 docker archives, schema we cannot read)
    ├── MalformedInput                  (bad JSON, bad tar, bad gzip/zstd, bad descriptor)
    │   └── UnsafeArchiveEntry          (traversal, symlink/hardlink escapes, devices refused)
    ├── IntegrityError
    │   ├── DigestMismatch
    │   └── SizeMismatch
    ├── LimitExceeded                   (decompression bombs, huge JSON, index loops)
    ├── TransportError                  (something outside us failed)
    │   ├── RegistryError               (status, distribution-spec error codes)
    │   │   └── AuthenticationError
    │   └── DaemonError
    └── OutputError                     (an output could not be written / committed)
"""

from __future__ import annotations

from collections.abc import Sequence


class OccystrapError(Exception):
    """Root of every error raised on purpose by occystrap."""

    exit_status = 1


class UsageError(OccystrapError):
    """The caller asked for something malformed (bad URI, option, value)."""

    exit_status = 2


class InvalidReference(UsageError, ValueError):
    """A URI or image reference could not be parsed."""


class UnknownScheme(InvalidReference):
    """The URI scheme names no known transport."""


class InvalidOption(UsageError, ValueError):
    """An option (URI query, filter option, CLI flag) is unknown or has a bad value."""


class NotFound(OccystrapError):
    """Something named does not exist."""


class ImageNotFound(NotFound):
    """The image, tag or manifest named does not exist in the source."""


class BlobNotFound(NotFound):
    """A blob referenced by a manifest is missing."""


class PlatformNotFound(NotFound):
    """No manifest of an index matches the requested platform, or a single image (no
    index: ``single=True``, ``available`` holding its one platform) is for another one."""

    def __init__(self, wanted: str, available: Sequence[str], *, single: bool = False) -> None:
        self.wanted = wanted
        self.available = tuple(available)
        self.single = single
        offered = ", ".join(self.available) if self.available else "none"
        if single:
            super().__init__(f"no image for platform {wanted}; the image is {offered}")
        else:
            super().__init__(f"no image for platform {wanted}; the index offers: {offered}")


class UnsupportedFormat(OccystrapError):
    """The input is in a format we recognise but cannot process."""


class MalformedInput(OccystrapError):
    """The input is corrupt or not what it claims to be."""


class UnsafeArchiveEntry(MalformedInput):
    """An archive entry would escape its target or is refused for safety."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"unsafe archive entry {name!r}: {reason}")


class IntegrityError(OccystrapError):
    """Bytes did not match what their descriptor promised."""


class DigestMismatch(IntegrityError):
    def __init__(self, what: str, expected: str, actual: str) -> None:
        self.what = what
        self.expected = expected
        self.actual = actual
        super().__init__(f"digest mismatch for {what}: expected {expected}, got {actual}")


class SizeMismatch(IntegrityError):
    def __init__(self, what: str, expected: int, actual: int) -> None:
        self.what = what
        self.expected = expected
        self.actual = actual
        super().__init__(f"size mismatch for {what}: expected {expected} bytes, got {actual}")


class LimitExceeded(OccystrapError):
    """A safety limit was hit (decompression ratio, JSON size, index depth)."""


class TransportError(OccystrapError):
    """A remote party (registry, daemon) failed or refused."""


class RegistryError(TransportError):
    """A registry answered with an error."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        codes: Sequence[str] = (),
        retryable: bool = False,
    ) -> None:
        self.status = status
        self.codes = tuple(codes)
        self.retryable = retryable
        super().__init__(message)


class AuthenticationError(RegistryError):
    """Credentials were missing, refused, or a token could not be obtained."""


class DaemonError(TransportError):
    """The Docker/Podman Engine API failed or refused."""


class OutputError(OccystrapError):
    """An output could not be written or committed."""
