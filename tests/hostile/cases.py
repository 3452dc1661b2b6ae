"""The hostile corpus as data: every case, how to build it, and what each output must do.

A case is a broken or malicious input (an OCI layout or a docker-save archive) built by a
recipe into ``corpus/<id>/``. For each output it runs into, the case says whether occystrap
must **refuse** it (non-zero exit, one ``occystrap: error:`` line matching ``error``, nothing
written outside the target, no complete-looking output) or **carry** it (exit 0, the output
complete, still nothing written outside the target).

Outputs:

* ``tar`` (``tar://OUT.tar``), ``dir`` (``dir://OUT``), ``dir-expand`` (``dir://OUT?expand=true``),
  ``bundle`` (``oci://OUT``): layers are decompressed and parsed as tar on the way, so any
  broken layer is refused.
* ``ocidir`` (``ocidir://OUT:copy``): layers are blobs, copied byte for byte and verified by
  digest only; a layer whose bytes match its descriptor is carried even when it is not a
  valid tar (as skopeo and every registry do).
* ``ocidir+filter``: the same with ``-f exclude:pattern=no/such/file``, which makes the engine
  read every layer as tar.

Recipes live in ``recipes_*.py``; ``build.py`` writes the corpus and ``corpus/cases.json``.
Cases marked ``generated`` need big or sparse files and are built at test time instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

OUTPUTS: tuple[str, ...] = ("tar", "ocidir", "ocidir+filter", "dir", "dir-expand", "bundle")
ALL = frozenset(OUTPUTS)
DECOMPRESSING = ALL - {"ocidir"}
EXTRACTING = frozenset({"dir-expand", "bundle"})
#: Cases refused while the source is opened, before any output exists, run into these only.
EARLY = frozenset({"tar", "ocidir", "dir-expand"})
NONE: frozenset[str] = frozenset()

Builder = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    id: str
    cls: str
    summary: str
    source: str  # URI with {case} standing for the case directory
    build: Builder = field(repr=False, compare=False)
    refuse: frozenset[str] = ALL
    error: str = ""  # regex the error line must match (refused outputs)
    args: tuple[str, ...] = ()
    stdin: str | None = None  # file in the case directory fed on standard input
    generated: bool = False
    outputs: frozenset[str] = ALL
    early: bool = False  # refused while the source is opened: the output stays empty

    def expect(self, output: str) -> str:
        return "refuse" if output in self.refuse else "carry"

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "class": self.cls,
            "summary": self.summary,
            "source": self.source,
            "refuse": sorted(self.refuse & self.outputs),
            "carry": sorted(self.outputs - self.refuse),
            "error": self.error,
            "args": list(self.args),
            "stdin": self.stdin,
            "generated": self.generated,
            "early": self.early,
        }


_CASES: dict[str, Case] = {}


def case(
    id: str,
    cls: str,
    summary: str,
    source: str = "ocidir://{case}/layout:latest",
    *,
    refuse: Iterable[str] = ALL,
    error: str = "",
    args: tuple[str, ...] = (),
    stdin: str | None = None,
    generated: bool = False,
    outputs: Iterable[str] = ALL,
    early: bool = False,
) -> Callable[[Builder], Builder]:
    """Register the decorated recipe as case ``id`` (``early``: refused at source open)."""

    def register(build: Builder) -> Builder:
        if id in _CASES:
            raise ValueError(f"duplicate hostile case {id!r}")
        _CASES[id] = Case(
            id,
            cls,
            summary,
            source,
            build,
            frozenset(refuse),
            error,
            args,
            stdin,
            generated,
            EARLY if early else frozenset(outputs),
            early,
        )
        return build

    return register


def all_cases() -> list[Case]:
    from . import (  # noqa: F401  (importing registers the recipes)
        recipes_docs,
        recipes_entries,
        recipes_json,
        recipes_streams,
        recipes_tar,
    )

    return list(_CASES.values())


CORPUS = Path(__file__).resolve().parent / "corpus"
