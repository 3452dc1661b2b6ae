"""When and how long to wait before trying a registry request again.

:class:`RetryPolicy` is a value: exponential backoff with jitter, ``Retry-After`` honoured
(delta-seconds or an HTTP date, capped at ``retry_after_max``). :func:`call` runs one request
function under a policy: it retries connection failures, timeouts, broken responses and the
``retry_statuses`` (5xx, 429, 408), and never retries TLS verification failures nor TLS
protocol errors (a handshake the server answered with something that is not TLS, such as
``WRONG_VERSION_NUMBER`` from a registry that speaks plain HTTP: retrying cannot help).
"""

from __future__ import annotations

import email.utils
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from ...errors import TransportError

log = logging.getLogger(__name__)

RETRYABLE_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
    retry_after_max: float = 120.0
    jitter: float = 0.25

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1 = the first retry)."""
        if response is not None:
            after = retry_after(response.headers.get("retry-after"))
            if after is not None:
                after = min(after, self.retry_after_max)
                return after + random.uniform(0, min(1.0, after * 0.1))
        base = min(self.backoff_max, self.backoff_base * (2.0 ** max(0, attempt - 1)))
        return base * (1 - random.uniform(0, self.jitter))

    def retries_status(self, status: int) -> bool:
        return status in self.retry_statuses

    def retries_error(self, error: BaseException) -> bool:
        return (
            isinstance(error, RETRYABLE_ERRORS)
            and not is_tls_verification_error(error)
            and tls_protocol_error(error) is None
        )


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value, or None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def is_tls_verification_error(error: BaseException) -> bool:
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


#: OpenSSL reasons for a handshake answered by something that does not speak TLS.
PLAIN_HTTP_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL"}
)
PLAIN_HTTP_HINT = "the registry may speak plain HTTP: add ?insecure=true or --insecure"


def tls_protocol_error(error: BaseException) -> ssl.SSLError | None:
    """The TLS protocol error behind ``error``: a plain ``ssl.SSLError`` (not a dropped
    connection such as ``SSLEOFError``/``SSLSyscallError``, which a retry may cure)."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return None
        if type(seen) is ssl.SSLError:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def describe(error: BaseException) -> str:
    """One line naming a transport failure, without request details."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    name = type(error).__name__
    return f"{name}: {text[:200]}" if text else name


def call(
    policy: RetryPolicy,
    send: Callable[[], httpx.Response],
    what: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[], None] | None = None,
) -> httpx.Response:
    """Run ``send`` until it returns a non-retryable response or attempts run out.

    A retryable status on the last attempt is returned as is (the caller maps it to an
    error); a retryable exception on the last attempt becomes :class:`TransportError`.
    """
    attempts = max(1, policy.attempts)
    for attempt in range(1, attempts + 1):
        try:
            response = send()
        except httpx.HTTPError as e:
            if is_tls_verification_error(e):
                raise TransportError(
                    f"{what}: TLS certificate verification failed ({describe(e)})"
                ) from e
            protocol = tls_protocol_error(e)
            if protocol is not None:
                hint = f"; {PLAIN_HTTP_HINT}" if protocol.reason in PLAIN_HTTP_REASONS else ""
                raise TransportError(f"{what}: TLS handshake failed ({describe(e)}){hint}") from e
            if not policy.retries_error(e) or attempt == attempts:
                tries = "" if attempt == 1 else f" (after {attempt} attempts)"
                raise TransportError(f"{what}: {describe(e)}{tries}") from e
            wait = policy.delay(attempt)
            log.info(
                "%s: %s; retrying in %.1fs (%d/%d)", what, describe(e), wait, attempt, attempts - 1
            )
        else:
            if not policy.retries_status(response.status_code) or attempt == attempts:
                return response
            wait = policy.delay(attempt, response)
            log.info(
                "%s: HTTP %d; retrying in %.1fs (%d/%d)",
                what,
                response.status_code,
                wait,
                attempt,
                attempts - 1,
            )
            response.close()
        if on_retry is not None:
            on_retry()
        sleep(wait)
    raise AssertionError("unreachable")
