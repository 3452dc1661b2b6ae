"""``occystrap`` command line. Parses options into a RunContext, calls the library, maps
errors to exit codes (2 usage, 1 failure) with one line each (a traceback with --debug).

Logging: warnings of every library by default; ``-v`` adds INFO of occystrap's own loggers
(``occystrap.*``), ``-vv`` their DEBUG; ``--debug`` turns on DEBUG for every library.
Everything but requested output (search hits, ``--json``, ``tar://-``) goes to stderr.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
import types
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .. import __version__
from ..cache.sizes import DEFAULT_MAX_SIZE, format_size, parse_size
from ..errors import InvalidOption, OccystrapError
from ..events import Stats
from ..model.descriptor import Platform
from ..transports.base import RegistrySettings, RunContext
from . import allocator, collector
from . import help as helptext
from .cache import cache
from .report import CliReporter, summary_line

if TYPE_CHECKING:
    from ..cache.store import LayerCache


class _State:
    debug = False
    json_output = False  # -O json
    reporter: CliReporter | None = None


def _configure_logging(verbose: int, debug: bool, reporter: CliReporter) -> None:
    handler = logging.StreamHandler(reporter.log_stream)  # stderr, above a live view
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.set_name("occystrap-cli")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "occystrap-cli"]:
        root.removeHandler(old)  # a previous in-process run's
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    own = logging.DEBUG if debug or verbose >= 2 else logging.INFO if verbose else logging.WARNING
    logging.getLogger("occystrap").setLevel(own)
    if not debug:  # httpx logs every request at INFO
        logging.getLogger("httpx").setLevel(logging.WARNING)


def _layer_cache(cache_dir: str | None, cache_max_size: str) -> LayerCache | None:
    if not cache_dir:
        return None
    from ..cache.store import LayerCache

    return LayerCache(cache_dir, parse_size(cache_max_size))


def _platform(
    value: str | None, os_: str | None, arch: str | None, variant: str | None
) -> Platform | None:
    if value:
        return Platform.parse(value)
    if os_ or arch or variant:  # the reference tool's flags; aliases such as aarch64 work
        return Platform.parse("/".join(p for p in (os_ or "linux", arch or "amd64", variant) if p))
    return None


def _tls_verify_value(argv: list[str]) -> list[str]:
    """skopeo's ``--tls-verify=false`` spelling of ``--no-tls-verify``."""
    out = []
    for arg in argv:
        value = arg.partition("=")[2].lower() if arg.startswith("--tls-verify=") else None
        if value in ("false", "0", "no", "off"):
            arg = "--no-tls-verify"
        elif value in ("true", "1", "yes", "on"):
            arg = "--tls-verify"
        out.append(arg)
    return out


@click.group(
    cls=helptext.Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
    epilog=helptext.GLOBAL_EPILOG,
)
@click.version_option(__version__, prog_name="occystrap")
@click.option(
    "--verbose",
    "-v",
    count=True,
    help="Log what occystrap does: -v INFO, -vv DEBUG of its own loggers.",
)
@click.option("--debug", is_flag=True, help="Debug logging of every library, tracebacks on errors.")
@click.option(
    "--quiet", "-q", is_flag=True, help="No progress, notices or summary line (errors still show)."
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    envvar="OCCYSTRAP_CACHE_DIR",
    help="Persistent layer cache: reruns reuse layers already filtered/compressed [env OCCYSTRAP_CACHE_DIR; off].",
)
@click.option(
    "--cache-max-size",
    metavar="SIZE",
    envvar="OCCYSTRAP_CACHE_MAX_SIZE",
    default=format_size(DEFAULT_MAX_SIZE).replace(" ", ""),
    show_default=True,
    help="Size bound of the layer cache (least recently used layers go first), e.g. 10G, 500MB.",
)
@click.option(
    "--platform",
    "platform_",
    metavar="OS/ARCH[/VARIANT]",
    help="Platform to pick from an index [linux/amd64].",
)
@click.option("--os", "os_", help="Compatibility: platform OS (use --platform).")
@click.option("--architecture", "--arch", "arch", help="Compatibility: platform architecture.")
@click.option("--variant", help="Compatibility: platform variant (arm64 means v8 when omitted).")
@click.option(
    "--all-platforms", is_flag=True, help="Copy every platform of an index, keeping its digest."
)
@click.option(
    "--username", envvar="OCCYSTRAP_USERNAME", help="Registry user [env OCCYSTRAP_USERNAME]."
)
@click.option(
    "--password", envvar="OCCYSTRAP_PASSWORD", help="Registry password [env OCCYSTRAP_PASSWORD]."
)
@click.option(
    "--insecure", is_flag=True, help="Plain HTTP for the registries named on the command line."
)
@click.option(
    "--tls-verify/--no-tls-verify",
    default=True,
    show_default=True,
    help="Verify registry TLS certificates (also --tls-verify=false).",
)
@click.option("--ca-file", type=click.Path(dir_okay=False), help="Extra CA bundle for registries.")
@click.option(
    "--cert-dir",
    type=click.Path(file_okay=False),
    help="Docker-style certs.d directory (HOST/ca.crt, client.cert/key).",
)
@click.option(
    "--compression",
    type=click.Choice(["gzip", "zstd", "none"]),
    envvar="OCCYSTRAP_COMPRESSION",
    default="gzip",
    show_default=True,
    help="Compression for layers that must be (re)compressed.",
)
@click.option(
    "--compression-level",
    type=int,
    help="Level for --compression (default: gzip 1 via isal-pinned, zstd 3).",
)
@click.option(
    "-j",
    "--parallel",
    "jobs",
    type=click.IntRange(1, 64),
    envvar="OCCYSTRAP_PARALLEL",
    default=4,
    show_default=True,
    help="Layers transferred at once.",
)
@click.option(
    "--temp-dir",
    type=click.Path(exists=True, file_okay=False, writable=True),
    envvar="OCCYSTRAP_TEMP_DIR",
    help="Where temporary files go [system default].",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 50),
    envvar="OCCYSTRAP_RETRIES",
    default=5,
    show_default=True,
    help="Retries per registry request.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    envvar="OCCYSTRAP_TIMEOUT",
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Network timeout per registry request (connect, and each read or write).",
)
@click.option(
    "--resume/--no-resume",
    envvar="OCCYSTRAP_RESUME",
    default=True,
    show_default=True,
    help="Keep each registry download on disk until the job succeeds (or the output holds "
    "the layer), so that a rerun continues one cut short ($XDG_CACHE_HOME/occystrap/partial). "
    "--no-resume writes no such copy: pulls into tar:// from a fast registry take about 10% "
    "less time [env OCCYSTRAP_RESUME].",
)
@click.option(
    "--output-format",
    "-O",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Compatibility: json makes info and check print JSON (same as their --json).",
)
@click.option(
    "--verify/--no-verify",
    envvar="OCCYSTRAP_VERIFY",
    default=True,
    hidden=True,  # the reference tool's read-back; every byte is verified while written
)
@click.option("--verify-full", envvar="OCCYSTRAP_VERIFY_FULL", is_flag=True, hidden=True)
@click.pass_context
def cli(
    ctx: click.Context,
    verbose: int,
    debug: bool,
    quiet: bool,
    cache_dir: str | None,
    cache_max_size: str,
    platform_: str | None,
    os_: str | None,
    arch: str | None,
    variant: str | None,
    all_platforms: bool,
    username: str | None,
    password: str | None,
    insecure: bool,
    tls_verify: bool,
    ca_file: str | None,
    cert_dir: str | None,
    compression: str,
    compression_level: int | None,
    jobs: int,
    temp_dir: str | None,
    retries: int,
    timeout: float,
    resume: bool,
    output_format: str,
    verify: bool,
    verify_full: bool,
) -> None:
    """Process container images as a stream: SOURCE -> filters -> DEST.

    \f
    Every byte is checked against its size and digest while it is written, and an output
    appears only when complete: the reference tool's --verify/--no-verify/--verify-full
    are accepted for compatibility and change nothing.
    """
    _State.debug = debug
    _State.json_output = output_format == "json"
    reporter = _State.reporter = CliReporter(quiet=quiet)
    _configure_logging(verbose, debug, reporter)
    if compression_level is not None:
        from ..blobio.compression import validate_level

        validate_level(compression, compression_level)
    stats = Stats()
    ctx.obj = RunContext(
        temp_dir=temp_dir,
        jobs=jobs,
        platform=_platform(platform_, os_, arch, variant),
        all_platforms=all_platforms,
        compression=compression,
        compression_level=compression_level,
        registry=RegistrySettings(
            username=username,
            password=password,
            tls_verify=tls_verify,
            ca_file=ca_file,
            cert_dir=cert_dir,
            insecure_hosts=("*",) if insecure else (),
            retries=retries,
            timeout=timeout,
            partial_dir=None if resume else "off",
        ),
        reporter=reporter,
        stats=stats,
        layer_cache=_layer_cache(cache_dir, cache_max_size),
    )


@cli.command(cls=helptext.Command, epilog=helptext.PROCESS_EPILOG)
@click.argument("source")
@click.argument("dest")
@click.option(
    "-f",
    "--filter",
    "filters",
    multiple=True,
    metavar="FILTER",
    help="NAME[:key=value,...]; repeatable.",
)
@click.pass_obj
def process(run: RunContext, source: str, dest: str, filters: tuple[str, ...]) -> None:
    """Copy the image SOURCE to DEST through the given filters."""
    from ..api import process as run_process
    from ..transports import parse as parse_uri

    reporter = run.reporter
    assert isinstance(reporter, CliReporter)
    target = parse_uri(dest, "destination")
    reporter.results_on_stderr = target.transport.scheme == "tar" and target.target == "-"
    started = time.monotonic()
    result = run_process(source, dest, list(filters), run)
    reporter.close()
    reporter.notice(result.description)
    reporter.summary(summary_line(run.stats, time.monotonic() - started))


cli.add_command(cache)


@cli.command()
@click.argument("source")
@click.argument("pattern")
@click.option("--regex", is_flag=True, help="PATTERN is a Python regular expression.")
@click.option("--script-friendly", is_flag=True, help="One tab-separated line per hit.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per hit.")
@click.pass_obj
def search(
    run: RunContext, source: str, pattern: str, regex: bool, script_friendly: bool, as_json: bool
) -> None:
    """Search the layers of SOURCE for paths matching PATTERN (exit 0 if found, 1 if not)."""
    from ..api import search as run_search

    found = run_search(
        source, pattern, regex=regex, script_friendly=script_friendly, as_json=as_json, ctx=run
    )
    reporter = run.reporter
    assert isinstance(reporter, CliReporter)
    reporter.close()
    sys.exit(0 if found else 1)


@cli.command()
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="JSON (schema: docs/info.schema.json).")
@click.pass_obj
def info(run: RunContext, source: str, as_json: bool) -> None:
    """Describe the image SOURCE without reading its layers."""
    import json

    from ..api import open_source
    from ..info import describe, render_text

    as_json = as_json or _State.json_output
    with open_source(source, run) as image:
        described = describe(image)
    click.echo(
        json.dumps(described, indent=2, sort_keys=True) if as_json else render_text(described)
    )


@cli.command()
@click.argument("source")
@click.option(
    "--full", is_flag=True, help="Also stream every layer: sizes, digests, diff_ids, tar members."
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="JSON: {reference, mode, errors, warnings, infos, results}.",
)
@click.pass_obj
def check(run: RunContext, source: str, full: bool, as_json: bool) -> None:
    """Validate the image SOURCE (ids and severities: docs/check.md); exit 1 on any error."""
    import json

    from ..check import run_check

    as_json = as_json or _State.json_output
    report = run_check(source, run, full=full)
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.render_text())
    sys.exit(1 if report.errors else 0)


def _fail(message: str, status: int) -> NoReturn:
    _stop_progress()
    click.echo(f"occystrap: error: {message}", err=True)
    sys.exit(status)


def _stop_progress() -> None:
    if _State.reporter is not None:
        _State.reporter.close()


def _without_httpx_cli() -> None:
    """``import httpx`` also imports its own command-line tool (``httpx._main``: rich's
    console and progress, pygments, click) when they are installed: 60-80 ms of start-up
    this process never uses. A placeholder registered first takes its place; the library
    itself leaves httpx alone, only the command line owns its process."""
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    placeholder = types.ModuleType("httpx._main")

    def main() -> None:
        raise SystemExit("httpx's command line is not loaded in occystrap")

    placeholder.main = main  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = placeholder


def main(argv: list[str] | None = None) -> None:
    _without_httpx_cli()
    allocator.tune()
    collector.tune()
    try:
        args = _tls_verify_value(sys.argv[1:] if argv is None else argv)
        try:
            # Not cli.main(): it echoes a blank line on Ctrl-C before re-raising.
            with cli.make_context("occystrap", args) as ctx:
                cli.invoke(ctx)
        finally:
            _stop_progress()  # a live view must never outlive the command (cursor, threads)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        _fail("interrupted", 130)
    except click.ClickException as e:
        _fail(e.format_message().splitlines()[0], 2)
    except OccystrapError as e:
        if _State.debug:
            traceback.print_exc()
        _fail(_one_line(e), e.exit_status)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        sys.stderr.close()
        os._exit(1)
    except Exception as e:  # a bug of ours: still one line, traceback with --debug
        if _State.debug:
            traceback.print_exc()
        _fail(f"internal error: {type(e).__name__}: {_one_line(e)}", 1)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def _unused(*_: Any) -> None:  # pragma: no cover
    raise InvalidOption("unreachable")
