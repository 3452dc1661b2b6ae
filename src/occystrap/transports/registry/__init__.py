"""Registry transport: a Distribution-API client (auth, TLS, retries, resumable blobs, uploads)."""

from __future__ import annotations

from .auth import Authenticator, Challenge, merge_scopes, parse_challenges, repository_scope
from .client import BlobReader, ClientStats, Manifest, ManifestHead, RegistryClient
from .credentials import Credentials, RedactingFilter, lookup, redact
from .reference import DOCKER_HUB, RegistryReference, parse
from .retry import RetryPolicy
from .tls import TLSConfig
from .upload import BlobSource, UploadResult

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
