"""Typed options of OCI runtime bundles (``oci://``), parsed from the URI's query."""

from __future__ import annotations

from dataclasses import dataclass

from ...options import option


@dataclass(frozen=True)
class BundleSinkOptions:
    rootless: bool = option(False, "write a rootless runtime spec (user namespace, no devices)")
