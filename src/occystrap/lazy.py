"""Package exports imported on first use, so that start-up loads only what a command needs.

A package's ``__init__`` declares where each public name lives and sets
``__getattr__ = exports(__name__, {...})`` (PEP 562); type checkers read the same names
from an ``if TYPE_CHECKING:`` import block.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``package.where[name]`` and returns ``name``."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f".{module}", package), name)

    return __getattr__
