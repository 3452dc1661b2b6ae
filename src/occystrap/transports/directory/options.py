"""Typed options of layer directories (``dir://``), parsed from the URI's query."""

from __future__ import annotations

from dataclasses import dataclass

from ...options import option


@dataclass(frozen=True)
class DirSinkOptions:
    unique_names: bool = option(
        False, "content-addressed layer store shared by many images (catalog.json)"
    )
    expand: bool = option(False, "also extract the layers into PATH/rootfs with whiteouts applied")
