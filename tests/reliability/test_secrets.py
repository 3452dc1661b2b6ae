"""Passwords and tokens never appear in output, logs or exception texts.

Pushes and pulls against the htpasswd registry (``registry_auth``) and the Bearer-token
registry (``registry_token``) with ``--debug --verbose``, credentials given four ways (flags,
``OCCYSTRAP_USERNAME/PASSWORD``, a temporary ``DOCKER_CONFIG/config.json``, and a wrong
password). A counting proxy sits in front of each registry, so every ``Authorization`` value
the client really sent (Basic value, each Bearer token) is known; stdout+stderr are searched
for the password, base64 ``user:pass``, every such value, and for ``eyJ`` (the start of any
base64 JSON, such as a JWT). The same search runs over the library's log records (every
logger at DEBUG), over ``str``/``repr`` of the exceptions it raises and their whole chains
(what ``--debug`` prints as a traceback), and over reprs of the settings objects.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.ocilayout import LayoutInfo
from lab.registry import Registry, http_get
from occystrap import api
from occystrap.errors import AuthenticationError, NotFound, OccystrapError
from occystrap.transports.base import RegistrySettings, RunContext
from occystrap.transports.registry.credentials import Credentials, lookup

from .harness import occystrap_cmd, ok, record, run
from .netproxy import RegistryProxy

WRONG = "Wr0ng-Pa55word-do-not-print"
HOWS = ["flags", "env", "docker-config", "wrong-password"]


@pytest.fixture(params=["auth", "token"])
def secured(request: pytest.FixtureRequest) -> Registry:
    reg: Registry = request.getfixturevalue(f"registry_{request.param}")
    return reg


@pytest.fixture
def proxy(secured: Registry) -> Iterator[RegistryProxy]:
    with RegistryProxy(secured.host) as p:
        yield p


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secrets_of(reg: Registry, proxy: RegistryProxy, password: str) -> list[str]:
    """Everything that must never be printed: passwords, Basic values, tokens seen on the wire."""
    assert reg.username and reg.password
    found = {
        reg.password,
        password,
        b64(f"{reg.username}:{reg.password}"),
        b64(f"{reg.username}:{password}"),
    }
    for ex in proxy.exchanges():
        value = ex.headers.get("authorization", "")
        if value:
            credential = value.split(" ", 1)[1]
            found.add(credential)
            if credential.startswith("eyJ"):  # also each part of a JWT on its own
                found.update(part for part in credential.split(".") if len(part) >= 16)
    return sorted(found)


#: distribution's upload-session state (an HMAC, then base64 JSON of the session): public
#: to the client, not a credential, and its random HMAC bytes may spell "eyJ" by chance.
UPLOAD_STATE = re.compile(r"_state=[A-Za-z0-9%_.=-]+")


def assert_clean(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{where} contains a secret ({secret[:4]}…)"
    assert "eyJ" not in UPLOAD_STATE.sub("_state=…", text), (
        f"{where} contains base64 JSON (a token?)"
    )


def credentials_for(
    how: str, reg: Registry, host: str, tmp_path: Path, env: dict[str, str]
) -> list[str]:
    """CLI flags for ``how``; env and the config file are set up in ``env``/on disk."""
    assert reg.username and reg.password
    if how == "flags":
        return ["--username", reg.username, "--password", reg.password]
    if how == "wrong-password":
        return ["--username", reg.username, "--password", WRONG]
    if how == "env":
        env["OCCYSTRAP_USERNAME"], env["OCCYSTRAP_PASSWORD"] = reg.username, reg.password
        return []
    config = Path(env["DOCKER_CONFIG"])
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.json").write_text(
        json.dumps({"auths": {host: {"auth": b64(f"{reg.username}:{reg.password}")}}})
    )
    return []


@pytest.mark.parametrize("how", HOWS)
def test_cli_prints_no_secret(
    how: str,
    secured: Registry,
    proxy: RegistryProxy,
    busybox_layout: LayoutInfo,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    flags = credentials_for(how, secured, proxy.host, tmp_path, env)
    target = f"registry://{proxy.host}/secrets/{how}:v1"
    common = ["--debug", "--verbose", "--insecure", *flags]
    push = run(
        occystrap_cmd(*common, "process", f"ocidir://{busybox_layout.path}:latest", target), env
    )
    outputs = [push]
    if how == "wrong-password":
        assert push.returncode == 1
        lines = push.stderr.decode().splitlines()
        assert lines[-1].startswith("occystrap: error: credentials refused"), lines[-1]
    else:
        ok(push)
        pull = ok(
            run(occystrap_cmd(*common, "process", target, f"ocidir://{tmp_path / 'out'}:v1"), env)
        )
        outputs.append(pull)
        check = ok(run(occystrap_cmd(*common, "check", target), env))
        outputs.append(check)
    sent = [
        e.headers.get("authorization", "").split(" ")[0]
        for e in proxy.exchanges()
        if e.headers.get("authorization")
    ]
    expected_scheme = "Bearer" if secured.mode == "token" else "Basic"
    if how != "wrong-password":
        assert expected_scheme in sent, sent  # credentials really were used
    secrets = secrets_of(secured, proxy, WRONG)
    scanned = 0
    for done in outputs:
        text = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        scanned += len(text)
        assert_clean(text, secrets, f"{how} output")
    record(
        "secrets",
        registry=secured.mode,
        credentials=how,
        runs=len(outputs),
        output_bytes=scanned,
        secrets_searched=len(secrets),
        outcome="none found",
    )


def test_no_secret_with_anonymous_bearer_and_refused_push(
    registry_token: Registry, busybox_layout: LayoutInfo, env: dict[str, str], tmp_path: Path
) -> None:
    """Anonymous callers get pull-only tokens: the refused push must not print its token."""
    with RegistryProxy(registry_token.host) as proxy:
        done = run(
            occystrap_cmd(
                "--debug",
                "--verbose",
                "--insecure",
                "process",
                f"ocidir://{busybox_layout.path}:latest",
                f"registry://{proxy.host}/secrets/anon:v1",
            ),
            env,
        )
        assert done.returncode == 1
        tokens = secrets_of(registry_token, proxy, WRONG)
    assert any(t.startswith("eyJ") for t in tokens), "no token was issued"
    assert_clean(done.stdout.decode() + done.stderr.decode(), tokens, "anonymous push")
    assert (
        "authentication required" in done.stderr.decode().splitlines()[-1]
        or "denied" in done.stderr.decode().splitlines()[-1]
    )


def test_token_server_issues_jwts(registry_token: Registry) -> None:
    """The scan for ``eyJ`` is meaningful: the lab's tokens are JWTs that start with it."""
    assert registry_token.token_url
    status, _, body = http_get(
        f"{registry_token.token_url}?service=lab-registry&scope=repository:secrets/x:pull",
        auth=registry_token.creds,
    )
    assert status == 200
    assert json.loads(body)["token"].startswith("eyJ")


# -- the library: log records and exception texts ------------------------------------------------


@pytest.mark.parametrize("password", ["right", "wrong"])
def test_library_logs_and_exceptions_hold_no_secret(
    password: str,
    secured: Registry,
    proxy: RegistryProxy,
    busybox_layout: LayoutInfo,
    env: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert secured.username and secured.password
    secret = secured.password if password == "right" else WRONG
    settings = RegistrySettings(
        username=secured.username, password=secret, insecure_hosts=("*",), retries=1
    )
    ctx = RunContext(registry=settings)
    caplog.set_level(logging.DEBUG)
    texts = [
        repr(settings),
        repr(ctx),
        str(lookup(proxy.host, username=secured.username, password=secret)),
    ]
    target = f"registry://{proxy.host}/secrets/library-{password}:v1"
    try:
        api.process(f"ocidir://{busybox_layout.path}:latest", target, ctx=ctx)
        api.process(target, f"ocidir://{tmp_path / 'out'}:v1", ctx=ctx)
        # a failure after authenticating: the image does not exist
        api.process(
            f"registry://{proxy.host}/secrets/missing:v1", f"ocidir://{tmp_path / 'x'}:v1", ctx=ctx
        )
    except OccystrapError as e:
        texts += [str(e), repr(e), "".join(traceback.format_exception(e))]
        assert isinstance(e, AuthenticationError if password == "wrong" else NotFound), repr(e)
    else:
        raise AssertionError("the last call must fail")
    texts += [r.getMessage() for r in caplog.records]
    texts += [caplog.text]
    secrets = secrets_of(secured, proxy, WRONG)
    assert len(caplog.records) > 10  # debug logging really ran
    assert_clean("\n".join(texts), secrets, "library logs/exceptions")
    record(
        "secrets",
        registry=secured.mode,
        credentials=f"library, {password} password",
        log_records=len(caplog.records),
        secrets_searched=len(secrets),
        outcome="none found in log records, exception str/repr/traceback, settings reprs",
    )


def test_credentials_repr_hides_secrets() -> None:
    creds = Credentials("u", "pa55-secret", "id-token-secret", "test")
    for text in (
        repr(creds),
        str(creds),
        repr(RegistrySettings(username="u", password="pa55-secret")),
    ):
        assert "pa55-secret" not in text and "id-token-secret" not in text
