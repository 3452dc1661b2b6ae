"""The benchmark jobs: for each, the command of every tool, its floor, its output check and
its targets (issue 6).

A command is built from a ``Ctx`` naming the corpus, the registries, the output directory
of this run and a repository name unique to this run (so pushes never find their blobs
already there). ``None`` means the tool cannot do the job.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from . import floors
from .corpus import REPO_TAG, Corpus
from .regclient import RegClient

Tool = Literal["ours", "ref", "skopeo", "floor"]
Kind = Literal["registry", "registry2", "tar", "dir", "ocidir", "expand"]
TOOLS: tuple[Tool, ...] = ("ours", "ref", "skopeo", "floor")
SOURCE_REPO = REPO_TAG.split(":")[0]


@dataclass(frozen=True)
class Ctx:
    corpus: Corpus
    reg1: str  # 127.0.0.1:PORT holding SOURCE_REPO
    reg2: str  # a second, empty registry (job E')
    out: Path  # this run's output directory (empty, removed after the run)
    repo: str  # a repository name unique to this run (for pushes)
    ours: str
    ref: str
    skopeo: str
    #: the registries' CA certificates when they speak TLS (``bench.compare --tls``);
    #: None: plain HTTP
    ca_file: str | None = None

    @property
    def registry_flags(self) -> list[str]:
        """How ours reaches the registries: ``--insecure`` (plain HTTP) or ``--ca-file``."""
        return ["--insecure"] if self.ca_file is None else ["--ca-file", self.ca_file]

    def dest_host(self, kind: Kind) -> str:
        return self.reg2 if kind == "registry2" else self.reg1


@dataclass(frozen=True)
class Job:
    name: str
    source: Kind
    dest: Kind
    filters: tuple[str, ...] = ()
    ref_ok: bool = True
    skopeo_ok: bool = True
    # target ratios: ours / ref, ours / skopeo (None: no target)
    vs_ref: float | None = None
    vs_skopeo: float | None = None
    note: str = ""
    floor: Callable[[Ctx], object] = field(default=lambda ctx: None, compare=False)

    @property
    def title(self) -> str:
        names = {
            "registry": "registry",
            "registry2": "another registry",
            "tar": "tar://",
            "dir": "dir://",
            "ocidir": "ocidir://",
            "expand": "dir://?expand=true",
        }
        same = " (same registry, new repo)" if self.source == self.dest == "registry" else ""
        flt = "".join(f" -f {f}" for f in self.filters)
        return f"{names[self.source]} → {names[self.dest]}{same}{flt}"


def _ours_uri(ctx: Ctx, kind: Kind, role: str) -> str:
    if kind in ("registry", "registry2"):
        if role == "source":
            return f"registry://{ctx.reg1}/{REPO_TAG}"
        return f"registry://{ctx.dest_host(kind)}/{ctx.repo}:latest"
    if kind == "tar":
        return (
            f"tar://{ctx.corpus.docker_tar}" if role == "source" else f"tar://{ctx.out}/image.tar"
        )
    if kind == "dir":
        return f"dir://{ctx.out}/dir"
    if kind == "ocidir":
        return f"ocidir://{ctx.out}/layout:latest"
    return f"dir://{ctx.out}/dir?expand=true"


def _skopeo_ref(ctx: Ctx, kind: Kind, role: str) -> list[str]:
    prefix = "--src" if role == "source" else "--dest"
    if kind in ("registry", "registry2"):
        ref = (
            f"docker://{ctx.reg1}/{REPO_TAG}"
            if role == "source"
            else f"docker://{ctx.dest_host(kind)}/{ctx.repo}:latest"
        )
        return [f"{prefix}-tls-verify=false", ref]
    if kind == "tar":
        return [
            f"docker-archive:{ctx.corpus.docker_tar}"
            if role == "source"
            else f"docker-archive:{ctx.out}/image.tar:{REPO_TAG}"
        ]
    if kind == "dir":  # layers stored uncompressed, as dir:// stores them
        return ["--dest-decompress", f"dir:{ctx.out}/dir"]
    return [f"oci:{ctx.out}/layout:latest"]


def command(job: Job, tool: Tool, ctx: Ctx) -> list[str] | None:
    """The argv of ``tool`` for ``job``, or None when the tool cannot do it."""
    flt = [arg for f in job.filters for arg in ("-f", f)]
    if tool == "ours":
        src, dst = _ours_uri(ctx, job.source, "source"), _ours_uri(ctx, job.dest, "dest")
        return [ctx.ours, "-q", *ctx.registry_flags, "process", src, dst, *flt]
    if tool == "ref" and job.ref_ok:
        src, dst = _ours_uri(ctx, job.source, "source"), _ours_uri(ctx, job.dest, "dest")
        return [ctx.ref, "--insecure", "--no-verify", "process", src, dst, *flt]
    if tool == "skopeo" and job.skopeo_ok:
        src_args = _skopeo_ref(ctx, job.source, "source")
        dst_args = _skopeo_ref(ctx, job.dest, "dest")
        return [ctx.skopeo, "--insecure-policy", "copy", "-q", *src_args, *dst_args]
    return None


def _count(root: Path) -> int:
    return sum(len(dirs) + len(files) for _, dirs, files in os.walk(root))


def check(job: Job, ctx: Ctx) -> tuple[str | None, int | None]:
    """Sanity-check a run's output: (error or None, compressed bytes pushed or None)."""
    corpus = ctx.corpus
    if job.dest in ("registry", "registry2"):
        with RegClient(ctx.dest_host(job.dest), ca_file=ctx.ca_file) as reg:
            try:
                sizes = reg.layer_sizes(ctx.repo, "latest")
            except Exception as err:
                return f"output check: {err}", None
        if len(sizes) != len(corpus.layer_digests):
            return f"output check: {len(sizes)} layers pushed, expected 4", None
        return None, sum(sizes)
    if job.dest == "tar":
        path = ctx.out / "image.tar"
        if not path.is_file() or path.stat().st_size < 0.9 * corpus.uncompressed:
            return "output check: image.tar missing or too small", None
    elif job.dest == "ocidir":
        if not (ctx.out / "layout" / "index.json").is_file():
            return "output check: no index.json in the layout", None
    elif job.dest == "dir":
        if not (ctx.out / "dir").is_dir() or not any((ctx.out / "dir").iterdir()):
            return "output check: output directory missing or empty", None
    elif _count(ctx.out / "dir") < 0.9 * corpus.entries[0]:
        return "output check: expanded tree has too few entries", None
    return None, None


JOBS: tuple[Job, ...] = (
    Job(
        "A",
        "registry",
        "tar",
        vs_ref=0.6,
        vs_skopeo=0.5,
        note="skopeo: docker-archive:",
        floor=lambda c: floors.pull(c.reg1, SOURCE_REPO, c.corpus, c.out, decompress=True),
    ),
    Job(
        "B",
        "registry",
        "dir",
        vs_ref=0.6,
        vs_skopeo=0.5,
        note="skopeo: dir: --dest-decompress (uncompressed layers, as dir:// stores them)",
        floor=lambda c: floors.pull(c.reg1, SOURCE_REPO, c.corpus, c.out, decompress=True),
    ),
    Job(
        "B'",
        "registry",
        "ocidir",
        ref_ok=False,
        note="skopeo: oci:; occystrap 0.4.17 has no OCI image layout output",
        floor=lambda c: floors.pull(c.reg1, SOURCE_REPO, c.corpus, c.out, decompress=False),
    ),
    Job(
        "C",
        "tar",
        "tar",
        filters=("normalize-timestamps",),
        skopeo_ok=False,
        vs_ref=0.25,
        floor=lambda c: floors.rewrite(c.corpus, c.out, normalize=True),
    ),
    Job(
        "C0",
        "tar",
        "tar",
        note="skopeo: docker-archive: → docker-archive:",
        floor=lambda c: floors.rewrite(c.corpus, c.out, normalize=False),
    ),
    Job(
        "D",
        "tar",
        "registry",
        vs_skopeo=0.7,
        note="pushed size checked against gzip -6",
        floor=lambda c: floors.push(c.corpus, c.reg1, c.repo),
    ),
    Job(
        "E",
        "registry",
        "registry",
        vs_skopeo=0.3,
        floor=lambda c: floors.mount(c.reg1, SOURCE_REPO, c.repo, c.corpus),
    ),
    Job(
        "E'",
        "registry",
        "registry2",
        vs_skopeo=1.0,
        floor=lambda c: floors.copy(c.reg1, SOURCE_REPO, c.reg2, c.repo, c.corpus),
    ),
    Job("G", "tar", "expand", skopeo_ok=False, floor=lambda c: floors.expand(c.corpus, c.out)),
)


def select(names: str) -> list[Job]:
    """The jobs named in a comma-separated list (B2 and E2 stand for B' and E'), in table
    order."""
    wanted = names.split(",")
    return [j for j in JOBS if j.name in wanted or j.name.replace("'", "2") in wanted]


def round_ctx(
    job: Job,
    who: str,
    r: int,
    *,
    corpus: Corpus,
    hosts: tuple[str, str],
    out: Path,
    tools: tuple[str, str, str],
    ca_file: str | None = None,
) -> Ctx:
    """The context of round ``r`` of ``job`` for ``who``: its own repository name, so a push
    never finds its blobs already there. ``tools``: ours, occystrap 0.4.17, skopeo."""
    slug = job.name.lower().replace("'", "2")
    return Ctx(corpus, hosts[0], hosts[1], out, f"bench/{slug}-{who}-{r}", *tools, ca_file)
