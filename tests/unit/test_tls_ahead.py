"""The system's CA certificates are loaded ahead, in a thread, for a run that will talk TLS.

:func:`occystrap.transports.registry.tls.prepare` starts making a context; the next
:meth:`TLSConfig.context` takes it, once. :func:`occystrap.transports.registry.ahead.prepare`
starts one only for a host the run will reach over TLS.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from occystrap.transports.base import RegistrySettings, RunContext
from occystrap.transports.registry import ahead, tls
from occystrap.transports.registry.options import RegistrySourceOptions


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the threads that made system contexts, in order; nothing left ahead."""
    names: list[str] = []
    real = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        names.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(tls.ssl, "create_default_context", counted)
    monkeypatch.setattr(tls, "_ahead", [])
    yield names


def test_a_context_made_ahead_is_taken_once(made: list[str]) -> None:
    tls.prepare()
    first = tls.TLSConfig().context("registry.example:5000")
    second = tls.TLSConfig().context("registry.example:5000")
    assert made == ["tls-ahead", threading.current_thread().name]
    assert first is not second
    for ctx in (first, second):
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        assert ctx.cert_store_stats()["x509_ca"] > 0  # the system's CAs are loaded


def test_each_prepare_makes_one_context(made: list[str]) -> None:
    tls.prepare()
    tls.prepare()
    contexts = [tls.TLSConfig().context(f"r{i}.example") for i in range(2)]
    assert made == ["tls-ahead", "tls-ahead"]
    assert contexts[0] is not contexts[1]


def test_a_failure_ahead_is_raised_where_the_context_is_needed(
    made: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(threading.current_thread().name)
        raise ssl.SSLError("no CA certificates")

    monkeypatch.setattr(tls.ssl, "create_default_context", broken)
    tls.prepare()
    with pytest.raises(ssl.SSLError, match="no CA certificates"):
        tls.TLSConfig().context("registry.example")
    assert made == ["tls-ahead", threading.current_thread().name]


def test_verification_switched_off_still_applies_to_a_context_made_ahead(
    made: list[str],
) -> None:
    tls.prepare()
    ctx = tls.TLSConfig(no_verify_hosts=frozenset({"self.signed"})).context("self.signed")
    assert made == ["tls-ahead"]
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname


@pytest.mark.parametrize(
    ("target", "insecure", "insecure_hosts", "starts"),
    [
        ("registry.example:5000/app:v1", False, (), True),
        ("busybox:latest", False, (), True),  # Docker Hub, over TLS
        ("registry.example:5000/app:v1", True, (), False),  # ?insecure=true
        ("registry.example:5000/app:v1", False, ("*",), False),  # --insecure
        ("registry.example:5000/app:v1", False, ("registry.example",), False),
        ("registry.example:5000/app:v1", False, ("other.example",), True),
        ("Not A Reference!", False, (), False),  # the opener reports it
    ],
)
def test_only_a_host_reached_over_tls_starts_one(
    made: list[str],
    target: str,
    insecure: bool,
    insecure_hosts: tuple[str, ...],
    starts: bool,
) -> None:
    ctx = RunContext(registry=RegistrySettings(insecure_hosts=insecure_hosts))
    ahead.prepare(target, RegistrySourceOptions(insecure=insecure), ctx)
    assert len(tls._ahead) == int(starts)
    for waiting in tls._ahead:
        assert waiting.done.wait(30)
    assert made == (["tls-ahead"] if starts else [])


def test_a_release_drops_a_context_nobody_took(made: list[str]) -> None:
    release = tls.prepare()
    taken = tls.prepare()
    tls.TLSConfig().context("registry.example")  # takes the first one made ahead
    release()  # nothing: it was taken
    assert len(tls._ahead) == 1
    taken()
    assert tls._ahead == []


def test_a_failed_run_leaves_no_context_made_ahead(made: list[str], tmp_path: Any) -> None:
    """A long-lived process that runs copies which fail before their clients are made
    (here: nothing listens on the source's port) must not pile up contexts."""
    from occystrap.api import process
    from occystrap.errors import OccystrapError

    ctx = RunContext(registry=RegistrySettings(retries=0, partial_dir="off"))
    for _ in range(3):
        with pytest.raises(OccystrapError):
            process("registry://127.0.0.1:1/a/b:v1", "registry://127.0.0.1:1/c/d:v1", ctx=ctx)
    assert tls._ahead == []
    for thread in threading.enumerate():
        if thread.name == "tls-ahead":
            thread.join(30)
    # each run made two ahead (its source's and its destination's), and none where needed
    assert made == ["tls-ahead"] * 6
