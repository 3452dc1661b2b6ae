"""Registry transport: a Distribution-API client (auth, TLS, retries, resumable blobs, uploads).

Names are imported on first use (``occystrap.lazy``): :mod:`.ahead` runs before the rest
of the transport is loaded, and must not pull in the HTTP client with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...lazy import exports

if TYPE_CHECKING:
    from .auth import Authenticator, Challenge, merge_scopes, parse_challenges, repository_scope
    from .client import BlobReader, ClientStats, Manifest, ManifestHead, RegistryClient
    from .credentials import Credentials, RedactingFilter, lookup, redact
    from .reference import DOCKER_HUB, RegistryReference, parse
    from .retry import RetryPolicy
    from .tls import TLSConfig
    from .upload import BlobSource, UploadResult

_WHERE = {
    "Authenticator": "auth",
    "Challenge": "auth",
    "merge_scopes": "auth",
    "parse_challenges": "auth",
    "repository_scope": "auth",
    "BlobReader": "client",
    "ClientStats": "client",
    "Manifest": "client",
    "ManifestHead": "client",
    "RegistryClient": "client",
    "Credentials": "credentials",
    "RedactingFilter": "credentials",
    "lookup": "credentials",
    "redact": "credentials",
    "DOCKER_HUB": "reference",
    "RegistryReference": "reference",
    "parse": "reference",
    "RetryPolicy": "retry",
    "TLSConfig": "tls",
    "BlobSource": "upload",
    "UploadResult": "upload",
}

__getattr__ = exports(__name__, _WHERE)

__all__ = [
    "DOCKER_HUB",
    "Authenticator",
    "BlobReader",
    "BlobSource",
    "Challenge",
    "ClientStats",
    "Credentials",
    "Manifest",
    "ManifestHead",
    "RedactingFilter",
    "RegistryClient",
    "RegistryReference",
    "RetryPolicy",
    "TLSConfig",
    "UploadResult",
    "lookup",
    "merge_scopes",
    "parse",
    "parse_challenges",
    "redact",
    "repository_scope",
]
