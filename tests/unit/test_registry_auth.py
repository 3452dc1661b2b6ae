"""Registry auth: challenge parsing, the Bearer token flow, Basic, credential lookup, secrecy.

The token flow runs against real loopback servers: a fake registry that demands Bearer tokens
with the right scopes, and a token server that records what it was asked. The last section
uses Debian's docker-registry in ``auth`` (htpasswd) and ``token`` modes.
"""

from __future__ import annotations

import base64
import http.server
import json
import logging
import os
import re
import secrets
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from occystrap.errors import AuthenticationError, ImageNotFound, InvalidOption, MalformedInput
from occystrap.transports.registry import (
    Authenticator,
    Credentials,
    RegistryClient,
    RetryPolicy,
    merge_scopes,
    parse_challenges,
    redact,
)
from occystrap.transports.registry.credentials import HUB_KEY, from_file, lookup

try:
    from lab.registry import start_registry
except ImportError:  # tests/ is not on sys.path when no conftest puts it there
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from lab.registry import start_registry

FAST = RetryPolicy(attempts=3, backoff_base=0.01, backoff_max=0.05)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


# ---- WWW-Authenticate parsing ------------------------------------------------------------------

CHALLENGES: list[tuple[Any, list[tuple[str, dict[str, str], str | None]]]] = [
    (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
        [("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                     "scope": "repository:library/busybox:pull"}, None)],
    ),
    (  # any order, spaces around '=' and ','
        'Bearer scope="repository:a:pull,push" , service = "svc",realm="https://r/t"',
        [("bearer", {"scope": "repository:a:pull,push", "service": "svc", "realm": "https://r/t"}, None)],
    ),
    (  # RFC 7235 example: two challenges, escapes in a quoted string, a bare token value
        'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"',
        [("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}, None),
         ("basic", {"realm": "simple"}, None)],
    ),
    (
        'Basic realm="lab-realm"',
        [("basic", {"realm": "lab-realm"}, None)],
    ),
    (  # commas inside quotes, error param, several scopes
        'Bearer realm="https://a/t?x=1,2",error="insufficient_scope",scope="repository:x:pull repository:y:pull"',
        [("bearer", {"realm": "https://a/t?x=1,2", "error": "insufficient_scope",
                     "scope": "repository:x:pull repository:y:pull"}, None)],
    ),
    (  # case-insensitive scheme and names
        'BEARER REALM="x", Service="y"',
        [("bearer", {"realm": "x", "service": "y"}, None)],
    ),
    (  # token68, then another challenge
        "Negotiate abc123+/==, Basic realm=x",
        [("negotiate", {}, "abc123+/=="), ("basic", {"realm": "x"}, None)],
    ),
    (  # unquoted URL value (seen in the wild) and empty list elements
        "Bearer realm=https://h/token, , service=svc",
        [("bearer", {"realm": "https://h/token", "service": "svc"}, None)],
    ),
    (  # two header lines
        ['Basic realm="one"', 'Bearer realm="two",service="s"'],
        [("basic", {"realm": "one"}, None), ("bearer", {"realm": "two", "service": "s"}, None)],
    ),
    (  # a scheme alone, then one with params
        'Digest, Bearer realm="r"',
        [("digest", {}, None), ("bearer", {"realm": "r"}, None)],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("header", "expected"), CHALLENGES)
def test_parse_challenges(
    header: Any, expected: list[tuple[str, dict[str, str], str | None]]
) -> None:
    got = [(c.scheme, dict(c.params), c.token68) for c in parse_challenges(header)]
    assert got == expected


def test_merge_scopes() -> None:
    assert merge_scopes(["repository:a:pull"], ["repository:a:push", "repository:b:pull"]) == (
        "repository:a:pull,push",
        "repository:b:pull",
    )
    assert merge_scopes(
        ["registry:catalog:*"], ["repository:a:pull,push"], ["repository:a:pull"]
    ) == (
        "registry:catalog:*",
        "repository:a:pull,push",
    )


# ---- credentials ------------------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "")}
    env.update(extra)
    return env


def _write(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_docker_config_auth(tmp_path: Path) -> None:
    env = _env(tmp_path)
    _write(
        Path(env["HOME"]) / ".docker/config.json",
        {"auths": {"reg.example:5000": {"auth": _b64("bob:pa:ss")}}},
    )
    creds = lookup("reg.example:5000", env=env)
    assert creds is not None and (creds.username, creds.password) == ("bob", "pa:ss")
    assert lookup("other.example", env=env) is None


def test_docker_hub_key_and_url_keys(tmp_path: Path) -> None:
    env = _env(tmp_path, DOCKER_CONFIG=str(tmp_path / "dc"))
    _write(tmp_path / "dc/config.json", {"auths": {HUB_KEY: {"auth": _b64("hubuser:hubpw")},
                                                    "https://quay.example/v2/": {"auth": _b64("q:qpw")}}})  # fmt: skip
    hub = lookup("registry-1.docker.io", env=env)
    assert hub is not None and hub.username == "hubuser"
    quay = lookup("quay.example", env=env)
    assert quay is not None and quay.password == "qpw"


def test_search_order(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    env = _env(tmp_path, XDG_RUNTIME_DIR=str(runtime))
    home = Path(env["HOME"])
    _write(home / ".docker/config.json", {"auths": {"r.example": {"auth": _b64("docker:1")}}})
    creds = lookup("r.example", env=env)
    assert creds is not None and creds.username == "docker"
    _write(
        home / ".config/containers/auth.json",
        {"auths": {"r.example": {"auth": _b64("user-auth:2")}}},
    )
    creds = lookup("r.example", env=env)
    assert creds is not None and creds.username == "user-auth"
    _write(runtime / "containers/auth.json", {"auths": {"r.example": {"auth": _b64("runtime:3")}}})
    creds = lookup("r.example", env=env)
    assert creds is not None and creds.username == "runtime"
    env["REGISTRY_AUTH_FILE"] = str(
        _write(tmp_path / "explicit.json", {"auths": {"r.example": {"auth": _b64("file:4")}}})
    )
    creds = lookup("r.example", env=env)
    assert creds is not None and creds.username == "file" and creds.source.endswith("explicit.json")
    env["OCCYSTRAP_USERNAME"], env["OCCYSTRAP_PASSWORD"] = "envuser", "envpw"
    creds = lookup("r.example", env=env)
    assert creds is not None and creds.username == "envuser"
    creds = lookup("r.example", username="cli", password="clipw", env=env)
    assert creds is not None and (creds.username, creds.password, creds.source) == (
        "cli",
        "clipw",
        "--username/--password",
    )
    with pytest.raises(InvalidOption):
        lookup("r.example", username="cli", env=env)


def test_identity_token_entry(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "c.json", {"auths": {"r.example": {"auth": "", "identitytoken": "refresh-xyz"}}}
    )
    creds = from_file(path, "r.example")
    assert creds is not None and creds.identity_token == "refresh-xyz" and creds.username is None


def _helper(bin_dir: Path, name: str, answers: dict[str, dict[str, str]]) -> Path:
    """A docker-credential-NAME script answering ``get`` from ``answers``; logs each server asked."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    log = bin_dir / f"{name}.log"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"answers = {answers!r}\n"
        "assert sys.argv[1:] == ['get'], sys.argv\n"
        "server = sys.stdin.read().strip()\n"
        f"open({str(log)!r}, 'a').write(server + '\\n')\n"
        "if server not in answers:\n"
        "    print('credentials not found in native keychain'); sys.exit(1)\n"
        "print(json.dumps(answers[server]))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return log


def test_credential_helpers(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    log = _helper(bin_dir, "test", {"r.example": {"ServerURL": "r.example", "Username": "helper-user", "Secret": "helper-pw"},
                                    HUB_KEY: {"Username": "<token>", "Secret": "identity-abc"}})  # fmt: skip
    store_log = _helper(
        bin_dir, "store", {"s.example": {"Username": "store-user", "Secret": "store-pw"}}
    )
    env = _env(tmp_path, PATH=f"{bin_dir}:{os.environ.get('PATH', '')}")
    config = {
        "auths": {"s.example": {}},
        "credHelpers": {"r.example": "test", "docker.io": "test"},
        "credsStore": "store",
    }
    _write(Path(env["HOME"]) / ".docker/config.json", config)
    creds = lookup("r.example", env=env)
    assert creds is not None and (creds.username, creds.password) == ("helper-user", "helper-pw")
    assert creds.source == "docker-credential-test"
    hub = lookup("registry-1.docker.io", env=env)
    assert hub is not None and hub.identity_token == "identity-abc" and hub.username is None
    assert log.read_text().split() == ["r.example", HUB_KEY]
    stored = lookup("s.example", env=env)
    assert stored is not None and stored.username == "store-user"
    assert lookup("unknown.example", env=env) is None
    assert store_log.read_text().split() == ["s.example", "unknown.example"]


def test_missing_helper_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env = _env(tmp_path, PATH=str(tmp_path / "empty"))
    _write(Path(env["HOME"]) / ".docker/config.json", {"credsStore": "nothere"})
    assert lookup("r.example", env=env) is None
    assert "docker-credential-nothere is not on PATH" in caplog.text


def test_bad_files_fail_without_secrets(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"auths": {"r": {"auth": "' + _b64("u:Sup3rSecret") + '"}')  # truncated JSON
    with pytest.raises(MalformedInput) as info:
        from_file(path, "r")
    assert "Sup3rSecret" not in str(info.value) and str(path) in str(info.value)
    _write(path, {"auths": {"r": {"auth": _b64("no-colon-Sup3rSecret")}}})
    with pytest.raises(MalformedInput) as info:
        from_file(path, "r")
    assert "Sup3rSecret" not in str(info.value)


def test_credentials_repr_hides_secrets() -> None:
    creds = Credentials("alice", "hunter2-pw", "tok-123456")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "hunter2-pw" not in text and "tok-123456" not in text and "alice" in text


def test_redact() -> None:
    text = "Authorization: Bearer eyJhbGciOi.abc.def token=abcdef123456 password=hunter22 other"
    clean = redact(text, ["other"])
    assert "eyJhbGciOi" not in clean and "abcdef123456" not in clean and "hunter22" not in clean
    assert "other" not in clean and "Authorization" in clean


# ---- a Bearer registry + token server on loopback ------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _any(self) -> None:
        self.server.app.handle(self)  # type: ignore[attr-defined]

    do_GET = do_HEAD = do_POST = do_PUT = _any

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server:
    def __init__(self, app: Any) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.app = app  # type: ignore[attr-defined]
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"http://{self.host}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _send(h: Any, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
    h.send_response(status)
    for key, value in (headers or {}).items():
        h.send_header(key, value)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def _body(h: Any) -> bytes:
    return bytes(h.rfile.read(int(h.headers.get("Content-Length") or 0)))


@dataclass
class TokenServer:
    users: dict[str, str] = field(
        default_factory=lambda: {"alice": "alice-pw-123", "reader": "reader-pw"}
    )
    refresh_tokens: dict[str, str] = field(default_factory=lambda: {"refresh-tok-999": "alice"})
    field_name: str = "token"
    expires_in: int | None = 300
    issued_at: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    granted: dict[str, set[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, h: Any) -> None:
        url = urlsplit(h.path)
        form = parse_qs(_body(h).decode()) if h.command == "POST" else {}
        query = parse_qs(url.query)
        with self.lock:
            self.requests.append({"method": h.command, "query": query, "form": form, "path": url.path,
                                  "authorization": h.headers.get("Authorization")})  # fmt: skip
        user = ""
        if h.command == "POST":
            if (
                form.get("grant_type") != ["refresh_token"]
                or form.get("refresh_token", [""])[0] not in self.refresh_tokens
            ):
                _send(h, 401, b'{"error":"invalid_grant"}')
                return
            user = self.refresh_tokens[form["refresh_token"][0]]
            scopes = form.get("scope", [""])[0].split()
        else:
            auth = h.headers.get("Authorization")
            if auth:
                name, _, password = base64.b64decode(auth.split()[1]).decode().partition(":")
                if self.users.get(name) != password:
                    _send(h, 401, b'{"details":"bad credentials"}')
                    return
                user = name
            scopes = [s for v in query.get("scope", []) for s in v.split()]
        granted = set()
        for scope in scopes:
            kind, name, actions = scope.rsplit(":", 2) if scope.count(":") >= 2 else (scope, "", "")
            for action in actions.split(","):
                if action == "pull" or (user and user != "reader"):
                    granted.add(f"{kind}:{name}:{action}")
        token = "tok-" + secrets.token_hex(8)
        with self.lock:
            self.granted[token] = granted
        doc: dict[str, Any] = {self.field_name: token}
        if self.expires_in is not None:
            doc["expires_in"] = self.expires_in
        if self.issued_at is not None:
            doc["issued_at"] = self.issued_at
        _send(h, 200, json.dumps(doc).encode(), {"Content-Type": "application/json"})


@dataclass
class BearerRegistry:
    realm: str
    tokens: TokenServer
    service: str = "fake-registry"
    extra_scope: str | None = None  # demanded on top of the request's own scope
    seen: list[dict[str, Any]] = field(default_factory=list)

    def handle(self, h: Any) -> None:
        body = _body(h)
        url = urlsplit(h.path)
        self.seen.append(
            {"method": h.command, "path": url.path, "authorization": h.headers.get("Authorization")}
        )
        if url.path == "/v2/":
            needed: set[str] = set()
        else:
            repo = re.match(r"/v2/(.+?)/(manifests|blobs|tags)/", url.path)
            assert repo is not None
            action = "pull" if h.command in ("GET", "HEAD") else "push"
            needed = {f"repository:{repo.group(1)}:{action}"}
            if self.extra_scope:
                needed.add(self.extra_scope)
        auth = h.headers.get("Authorization", "")
        granted = (
            self.tokens.granted.get(auth.removeprefix("Bearer "), None)
            if auth.startswith("Bearer ")
            else None
        )
        if granted is None or not needed <= granted:
            params = f'realm="{self.realm}",service="{self.service}"'
            wanted = " ".join(sorted(needed))
            if wanted:
                params += f',scope="{wanted}"'
            if granted is not None:
                params += ',error="insufficient_scope"'
            _send(h, 401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                  {"WWW-Authenticate": f"Bearer {params}"})  # fmt: skip
            return
        if h.command == "PUT":
            _send(
                h,
                201,
                b"",
                {
                    "Docker-Content-Digest": "sha256:"
                    + __import__("hashlib").sha256(body).hexdigest()
                },
            )
        elif url.path == "/v2/":
            _send(h, 200, b"{}")
        else:
            _send(h, 404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')


@pytest.fixture
def bearer() -> Iterator[tuple[BearerRegistry, TokenServer, Server]]:
    tokens = TokenServer()
    token_server = Server(tokens)
    app = BearerRegistry(f"{token_server.url}/token", tokens)
    registry = Server(app)
    try:
        yield app, tokens, registry
    finally:
        registry.close()
        token_server.close()


def _client(server: Server, creds: Credentials | None = None) -> RegistryClient:
    return RegistryClient(server.host, insecure=True, credentials=creds, retry=FAST)


def test_anonymous_token_flow(bearer: tuple[BearerRegistry, TokenServer, Server]) -> None:
    app, tokens, server = bearer
    with _client(server) as c:
        with pytest.raises(ImageNotFound):
            c.get_manifest("team/app", "v1")
        with pytest.raises(ImageNotFound):
            c.get_manifest("team/app", "v2")
    assert len(tokens.requests) == 1, "the token is cached and reused"
    (req,) = tokens.requests
    assert req["query"] == {"service": ["fake-registry"], "scope": ["repository:team/app:pull"]}
    assert req["authorization"] is None
    assert [s["authorization"] is None for s in app.seen] == [True, False, False]


def test_access_token_field_and_basic_to_realm(
    bearer: tuple[BearerRegistry, TokenServer, Server],
) -> None:
    app, tokens, server = bearer
    tokens.field_name = "access_token"
    with _client(server, Credentials("alice", "alice-pw-123")) as c:
        digest = c.put_manifest("team/app", "v1", b'{"mediaType":"x"}', OCI_MANIFEST)
    assert str(digest).startswith("sha256:")
    req = tokens.requests[-1]
    assert req["authorization"] == "Basic " + _b64("alice:alice-pw-123")
    assert req["query"]["scope"] == ["repository:team/app:pull,push"]


def test_identity_token_uses_oauth2_post(
    bearer: tuple[BearerRegistry, TokenServer, Server],
) -> None:
    _, tokens, server = bearer
    with _client(server, Credentials(identity_token="refresh-tok-999")) as c:
        c.put_manifest("team/app", "v1", b"{}", OCI_MANIFEST)
    req = tokens.requests[-1]
    assert req["method"] == "POST" and req["authorization"] is None
    assert req["form"]["grant_type"] == ["refresh_token"] and req["form"]["refresh_token"] == [
        "refresh-tok-999"
    ]
    assert req["form"]["scope"] == ["repository:team/app:pull,push"] and req["form"]["service"] == [
        "fake-registry"
    ]


def test_insufficient_scope_asks_for_wider_scope(
    bearer: tuple[BearerRegistry, TokenServer, Server],
) -> None:
    app, tokens, server = bearer
    app.extra_scope = "repository:other/src:pull"
    with _client(server) as c, pytest.raises(ImageNotFound):
        c.get_manifest("team/app", "v1")
    scopes = [r["query"]["scope"] for r in tokens.requests]
    assert scopes[-1] == ["repository:other/src:pull", "repository:team/app:pull"]


def test_token_refreshed_after_expiry(bearer: tuple[BearerRegistry, TokenServer, Server]) -> None:
    _, tokens, server = bearer
    tokens.expires_in = 1
    with _client(server) as c:
        for _ in range(2):
            with pytest.raises(ImageNotFound):
                c.get_manifest("a", "v1")
        assert len(tokens.requests) == 1
        time.sleep(1.05)
        with pytest.raises(ImageNotFound):
            c.get_manifest("a", "v1")
    assert len(tokens.requests) == 2


def test_expiry_counts_from_issued_at(bearer: tuple[BearerRegistry, TokenServer, Server]) -> None:
    _, tokens, server = bearer
    now = [1000.0]
    tokens.expires_in = 120
    tokens.issued_at = (datetime.now(UTC) - timedelta(seconds=100)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with httpx.Client() as http:
        auth = Authenticator(server.host, http, None, clock=lambda: now[0])
        challenge = parse_challenges(f'Bearer realm="{tokens_url(server, bearer)}",service="s"')[0]
        first = auth.token(challenge, ("repository:a:pull",))
        now[0] += 5
        assert auth.token(challenge, ("repository:a:pull",)) == first
        now[0] += 15  # 120 s after issue: the token has expired (it was 100 s old when received)
        assert auth.token(challenge, ("repository:a:pull",)) != first
    tokens.issued_at = "2001-01-01T00:00:00Z"  # implausible (clock skew): ignored, expires_in used
    with httpx.Client() as http:
        auth = Authenticator(server.host, http, None, clock=lambda: now[0])
        first = auth.token(challenge, ("repository:a:pull",))
        now[0] += 60
        assert auth.token(challenge, ("repository:a:pull",)) == first


def tokens_url(server: Server, bearer: tuple[BearerRegistry, TokenServer, Server]) -> str:
    return bearer[0].realm


def test_one_token_fetch_for_many_threads(
    bearer: tuple[BearerRegistry, TokenServer, Server],
) -> None:
    _, tokens, server = bearer
    errors: list[BaseException] = []
    with _client(server) as c:
        c.ping()

        def work() -> None:
            try:
                c.get_manifest("a", "v1")
            except ImageNotFound:
                pass
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert len(tokens.requests) == 1


def test_anonymous_push_refused(bearer: tuple[BearerRegistry, TokenServer, Server]) -> None:
    _, _, server = bearer
    with _client(server) as c, pytest.raises(AuthenticationError) as info:
        c.put_manifest("team/app", "v1", b"{}", OCI_MANIFEST)
    assert (
        str(info.value)
        == f"authentication required for {server.host}/team/app (no credentials found)"
    )


def test_insufficient_scope_for_user(bearer: tuple[BearerRegistry, TokenServer, Server]) -> None:
    _, tokens, server = bearer
    with (
        _client(server, Credentials("reader", "reader-pw")) as c,
        pytest.raises(AuthenticationError) as info,
    ):
        c.put_manifest("team/app", "v1", b"{}", OCI_MANIFEST)
    assert (
        str(info.value)
        == f"access denied to {server.host}/team/app for the given credentials (insufficient_scope)"
    )
    assert len(tokens.requests) == 2  # the first token, then one fresh try for the same scope


def test_wrong_password_at_token_server(
    bearer: tuple[BearerRegistry, TokenServer, Server], caplog: pytest.LogCaptureFixture
) -> None:
    _, tokens, server = bearer
    caplog.set_level(logging.DEBUG)
    with (
        _client(server, Credentials("alice", "N0t-The-Password")) as c,
        pytest.raises(AuthenticationError) as info,
    ):
        c.get_manifest("a", "v1")
    assert str(info.value) == f"credentials refused for {server.host} by its token service"
    for secret in ("N0t-The-Password", _b64("alice:N0t-The-Password")):
        assert secret not in caplog.text


def test_no_secrets_in_logs(
    bearer: tuple[BearerRegistry, TokenServer, Server], caplog: pytest.LogCaptureFixture
) -> None:
    _, tokens, server = bearer
    caplog.set_level(logging.DEBUG)
    with _client(server, Credentials("alice", "alice-pw-123")) as c:
        c.put_manifest("a", "v1", b"{}", OCI_MANIFEST)
        with pytest.raises(ImageNotFound) as info:
            c.get_manifest("a", "v2")
    issued = list(tokens.granted)
    assert issued
    for secret in ["alice-pw-123", _b64("alice:alice-pw-123"), *issued]:
        assert secret not in caplog.text and secret not in str(info.value)


@dataclass
class Proxy:
    """An HTTP proxy stand-in that answers token requests for any host and records them."""

    seen: list[dict[str, Any]] = field(default_factory=list)

    def handle(self, h: Any) -> None:
        self.seen.append({"url": h.path, "authorization": h.headers.get("Authorization")})
        _send(
            h,
            200,
            json.dumps({"token": "proxy-token"}).encode(),
            {"Content-Type": "application/json"},
        )


def test_no_credentials_to_foreign_realm_over_http(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    proxy_app = Proxy()
    proxy = Server(proxy_app)
    tokens = TokenServer()
    app = BearerRegistry("http://auth.example.invalid/token", tokens)
    tokens.granted["proxy-token"] = {"repository:a:pull", "repository:a:push"}
    registry = Server(app)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    try:
        with (
            _client(registry, Credentials("alice", "alice-pw-123")) as c,
            pytest.raises(ImageNotFound),
        ):
            c.get_manifest("a", "v1")
    finally:
        registry.close()
        proxy.close()
    assert proxy_app.seen and proxy_app.seen[0]["url"].startswith(
        "http://auth.example.invalid/token?"
    )
    assert all(s["authorization"] is None for s in proxy_app.seen)
    assert "not sending credentials" in caplog.text


def test_basic_challenge_answered_with_basic() -> None:
    seen: list[str | None] = []

    class BasicApp:
        def handle(self, h: Any) -> None:
            seen.append(h.headers.get("Authorization"))
            if h.headers.get("Authorization") != "Basic " + _b64("u:p-p"):
                _send(h, 401, b"", {"WWW-Authenticate": 'Basic realm="r"'})
            else:
                _send(h, 404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"m"}]}')

    server = Server(BasicApp())
    try:
        with _client(server, Credentials("u", "p-p")) as c:
            with pytest.raises(ImageNotFound):
                c.get_manifest("a", "v1")
            with pytest.raises(ImageNotFound):
                c.get_manifest("a", "v2")
    finally:
        server.close()
    assert seen == [None, "Basic " + _b64("u:p-p"), "Basic " + _b64("u:p-p")]


# ---- the real docker-registry: htpasswd and token modes -----------------------------------------


@pytest.fixture(scope="module", params=["auth", "token"])
def real_registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    reg = start_registry(request.param, tmp_path_factory.mktemp(f"{request.param}-registry"))
    try:
        yield reg
    finally:
        reg.stop()


def test_real_registry_auth(real_registry: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    host = real_registry.host
    good = Credentials(real_registry.username, real_registry.password)
    bad = Credentials(real_registry.username, "Wr0ng-Pa55word")
    raw = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {}, "layers": []}
    ).encode()
    with RegistryClient(host, insecure=True, retry=FAST) as c:
        c.ping()
        with pytest.raises(AuthenticationError) as info:
            c.put_manifest("team/app", "v1", raw, OCI_MANIFEST)
        assert str(info.value).startswith("authentication required for ")
        assert "(no credentials found)" in str(info.value)
    with RegistryClient(host, insecure=True, credentials=bad, retry=FAST) as c:
        with pytest.raises(AuthenticationError) as info:
            c.head_manifest("team/app", "v1")
        assert str(info.value).startswith(f"credentials refused for {host}")
    with RegistryClient(host, insecure=True, credentials=good, retry=FAST) as c:
        config = b"{}"
        from occystrap.model.digest import Digest

        d = Digest.of_bytes(config)
        assert (
            c.upload_blob("team/app", lambda: __import__("io").BytesIO(config), d, 2).outcome
            == "uploaded"
        )
        assert c.head_blob("team/app", d) == 2
        assert c.head_manifest("team/app", "v1") is None
    for secret in (
        "Wr0ng-Pa55word",
        real_registry.password,
        _b64(f"{real_registry.username}:{real_registry.password}"),
    ):
        assert secret not in caplog.text
