"""TLS verification is on unless one explicit option turns it off, per registry or for the run.

A registry with a lab CA (self-signed root) is refused by default with one line; trusting the
CA with ``--ca-file`` or ``--cert-dir`` works; ``--no-tls-verify`` / ``--tls-verify=false``
(every registry of the run) and ``?tls_verify=false`` (that registry only) are the only ways
to skip verification. Environment variables that switch verification off in other tools do
nothing here. ``--insecure`` means plain HTTP, never "HTTPS without checking": against a TLS
registry it fails (the registry answers 400 to plain HTTP), and without it a plain-HTTP
registry is not silently reached over HTTP either.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lab.ocilayout import LayoutInfo
from lab.registry import Registry
from lab.tools import skopeo

from .harness import index_refs, occystrap_cmd, ok, one_line_error, record, run


@pytest.fixture(scope="module")
def tls_image(registry_tls: Registry, busybox_layout: LayoutInfo) -> str:
    skopeo(
        "copy",
        *registry_tls.skopeo_args("dest"),
        busybox_layout.ref,
        registry_tls.ref("tls/busybox", "v1"),
    )
    return f"registry://{registry_tls.host}/tls/busybox:v1"


def pull(env: dict[str, str], tmp_path: Path, source: str, *flags: str) -> tuple[object, Path]:
    out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
    return run(
        occystrap_cmd(*flags, "--retries", "0", "process", source, f"ocidir://{out}:v1"), env
    ), out


def test_self_signed_registry_is_refused_by_default(
    tls_image: str, busybox_layout: LayoutInfo, env: dict[str, str], tmp_path: Path
) -> None:
    started = time.monotonic()
    done = run(occystrap_cmd("process", tls_image, f"ocidir://{tmp_path / 'out'}:v1"), env)
    elapsed = time.monotonic() - started
    line = one_line_error(done)
    assert "TLS certificate verification failed" in line, line
    assert elapsed < 10, "a verification failure must not be retried"  # default --retries 5
    assert index_refs(tmp_path / "out") == {}
    record("tls", case="default (no option), lab CA not trusted", outcome=line)


@pytest.mark.parametrize("how", ["--ca-file", "--cert-dir", "SSL_CERT_FILE"])
def test_trusting_the_ca_works(
    how: str,
    tls_image: str,
    registry_tls: Registry,
    busybox_layout: LayoutInfo,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    assert registry_tls.ca_file and registry_tls.certs_d
    flags: list[str] = []
    if how == "--ca-file":
        flags = ["--ca-file", str(registry_tls.ca_file)]
    elif how == "--cert-dir":
        flags = ["--cert-dir", str(registry_tls.certs_d)]
    else:
        env["SSL_CERT_FILE"] = str(registry_tls.ca_file)  # trusting a CA, not skipping checks
    done = ok(
        run(occystrap_cmd(*flags, "process", tls_image, f"ocidir://{tmp_path / 'out'}:v1"), env)
    )
    assert "verification is disabled" not in done.stderr.decode()
    assert index_refs(tmp_path / "out") == {"v1": busybox_layout.manifest_digest}
    record("tls", case=f"CA trusted with {how}", outcome="verified and pulled")


@pytest.mark.parametrize("how", ["--no-tls-verify", "--tls-verify=false", "?tls_verify=false"])
def test_explicit_options_skip_verification_with_a_warning(
    how: str, tls_image: str, busybox_layout: LayoutInfo, env: dict[str, str], tmp_path: Path
) -> None:
    source = tls_image + ("?tls_verify=false" if how.startswith("?") else "")
    flags = [] if how.startswith("?") else [how]
    done = ok(run(occystrap_cmd(*flags, "process", source, f"ocidir://{tmp_path / 'out'}:v1"), env))
    warning = [
        line for line in done.stderr.decode().splitlines() if "verification is disabled" in line
    ]
    assert len(warning) == 1, done.stderr.decode()
    assert index_refs(tmp_path / "out") == {"v1": busybox_layout.manifest_digest}
    record("tls", case=how, outcome=f"not verified; warns: {warning[0]}")


NOT_SWITCHES = {
    "OCCYSTRAP_TLS_VERIFY": "false",
    "OCCYSTRAP_INSECURE": "true",
    "OCCYSTRAP_NO_TLS_VERIFY": "1",
    "PYTHONHTTPSVERIFY": "0",
    "CURL_CA_BUNDLE": "",
    "REQUESTS_CA_BUNDLE": "",
    "SSL_CERT_FILE": "/dev/null",
    "GIT_SSL_NO_VERIFY": "1",
    "NODE_TLS_REJECT_UNAUTHORIZED": "0",
    "DOCKER_TLS_VERIFY": "",
    "REGISTRY_TLS_VERIFY": "false",
}


def test_no_environment_variable_turns_verification_off(
    tls_image: str, env: dict[str, str], tmp_path: Path
) -> None:
    env.update(NOT_SWITCHES)
    done = run(
        occystrap_cmd("--retries", "0", "process", tls_image, f"ocidir://{tmp_path / 'out'}:v1"),
        env,
    )
    assert "TLS certificate verification failed" in one_line_error(done)
    record(
        "tls",
        case=f"environment: {', '.join(sorted(NOT_SWITCHES))}",
        outcome="still verified (refused)",
    )


def test_tls_verify_false_on_one_uri_is_only_for_that_registry(
    tls_image: str, registry_tls_auth: Registry, env: dict[str, str], tmp_path: Path
) -> None:
    """The source skips verification; the destination (another TLS registry) is still checked."""
    assert registry_tls_auth.username and registry_tls_auth.password
    done = run(
        occystrap_cmd(
            "--retries", "0", "--username", registry_tls_auth.username, "--password", registry_tls_auth.password,
            "process", tls_image + "?tls_verify=false", f"registry://{registry_tls_auth.host}/tls/copy:v1",
        ),
        env,
    )  # fmt: skip
    assert done.returncode == 1
    warning, line = done.stderr.decode().strip().splitlines()
    assert warning.endswith(
        f"TLS certificate verification is disabled for {tls_image.split('/')[2]}"
    )
    assert line.startswith("occystrap: error: registry " + registry_tls_auth.host), line
    assert "TLS certificate verification failed" in line, line
    record(
        "tls",
        case="?tls_verify=false on the source, second TLS registry as destination",
        outcome=line,
    )


def test_insecure_never_downgrades_a_tls_registry(
    tls_image: str, registry_tls: Registry, env: dict[str, str], tmp_path: Path
) -> None:
    """--insecure = plain HTTP: a TLS registry answers 400, nothing is pulled unverified."""
    done = run(
        occystrap_cmd(
            "--insecure", "--retries", "0", "process", tls_image, f"ocidir://{tmp_path / 'out'}:v1"
        ),
        env,
    )
    line = one_line_error(done)
    assert registry_tls.host in line and "400" in line, line
    assert index_refs(tmp_path / "out") == {}
    record("tls", case="--insecure against the TLS registry", outcome=line)


def test_plain_registry_is_not_reached_over_http_without_insecure(
    registry_plain: Registry, env: dict[str, str], tmp_path: Path
) -> None:
    """No silent fallback from HTTPS to HTTP: without --insecure the run fails."""
    done = run(
        occystrap_cmd(
            "--retries",
            "0",
            "process",
            f"registry://{registry_plain.host}/tls/none:v1",
            f"ocidir://{tmp_path / 'out'}:v1",
        ),
        env,
    )
    line = one_line_error(done)
    assert registry_plain.host in line, line
    record("tls", case="plain-HTTP registry without --insecure", outcome=line)
