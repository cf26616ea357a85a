"""The Pull Order API client: one request per page, judged by status *and* body, retried with care.

Kapture reports failures in odd shapes (`status`/`Status`, `message`/`Message`, a string where a
list belongs, HTTP 200 with `"status": "failed"`), so every response goes through `judge()`,
which turns it into records, a retryable `TransientError`, or a permanent `SyncError`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import orjson
import structlog
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_before_delay
from tenacity.wait import wait_random_exponential

from sync.budget import RequestBudget, shared_budget
from sync.errors import CredentialsRejected, KaptureRejected, KaptureUnavailable, SettingsError, TransientError
from sync.settings import Settings

log = structlog.get_logger(__name__)
T = TypeVar("T")

_STATS_LOCK = threading.Lock()  # several threads fetch windows at once through one client
_AUTH_WORDS = ("auth", "credential", "token", "unauthori", "password", "forbidden", "expired", "disabled")
# A failed body is about the request itself (retrying the same body cannot help) when its message
# says so; any other failed body ("Something went wrong. Please try again later.") is transient.
_REQUEST_WORDS = (
    "required",
    "invalid",
    "must be",
    "not a valid",
    "not this account",
    "not allowed",
    "expected",
    "bad request",
    "malformed",
    "unknown field",
    "not supported",
    "should",
    "exceed",
    "range",
    "format",
    "filter",
    "parameter",
    "cmid",
    "not found",
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6
    max_seconds: float = 300.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_cap: float = 300.0


@dataclass(slots=True)
class ClientStats:
    requests: int = 0
    retries: int = 0


@dataclass(frozen=True, slots=True)
class Page:
    records: list[Any]
    note: str | None = None  # a "no data" message Kapture sent instead of a list


@dataclass
class KaptureClient:
    """Sends pull requests for one account. The `httpx.Client` is passed in (tests hand in real local ones)."""

    http: httpx.Client
    cm_id: int
    endpoint_path: str
    method: str = "POST"
    numbers_as_strings: bool = True
    sort_param: str = ""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    stats: ClientStats = field(default_factory=ClientStats)
    budget: RequestBudget | None = None  # the process's request-rate budget (sync/budget.py); None: unpaced

    def body(self, filters: Mapping[str, str], offset: int, limit: int) -> dict[str, Any]:
        number = str if self.numbers_as_strings else int
        body: dict[str, Any] = {"cmId": self.cm_id, **filters, "limit": number(limit), "offset": number(offset)}
        if self.sort_param:
            body["sortParam"] = self.sort_param
        return body

    def pull(self, filters: Mapping[str, str], offset: int, limit: int) -> Page:
        """One page, retried on transient faults within the policy's attempts and time."""
        return self.pull_as(judge, filters, offset, limit)

    def pull_as(
        self, read: Callable[[int, Mapping[str, str], bytes], T], filters: Mapping[str, str], offset: int, limit: int
    ) -> T:
        """`pull`, with each answer read by `read` instead of `judge`: a reader that judges it the same
        way (`sync.read.read_page`, which may run on another core) and hands back more than the records."""
        content = orjson.dumps(self.body(filters, offset, limit))
        retrying = Retrying(
            stop=stop_after_attempt(self.retry.max_attempts) | stop_before_delay(self.retry.max_seconds),
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            sleep=self.sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(self._send_once, content, read)
        except TransientError as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            if exc.final is KaptureUnavailable:
                raise KaptureUnavailable(f"Kapture unreachable after {attempts} attempts: {exc}") from None
            raise exc.final(f"Kapture refused the request after {attempts} attempts: {exc}") from None

    def _send_once(self, content: bytes, read: Callable[[int, Mapping[str, str], bytes], T]) -> T:
        if self.budget is not None:
            self.budget.acquire(self.sleep)
        with _STATS_LOCK:
            self.stats.requests += 1
        try:
            status, headers, body = self._exchange(content)
        except httpx.TimeoutException as exc:
            raise TransientError(f"timed out ({type(exc).__name__})") from None
        except (httpx.LocalProtocolError, UnicodeEncodeError):
            # Our own request is malformed, most likely a header built from a credential; its text
            # would quote that header, so it is not repeated.
            raise SettingsError(
                "bad setting: the request could not be sent as HTTP; check the credentials for line breaks "
                "or non-ASCII characters"
            ) from None
        except httpx.TransportError as exc:
            raise TransientError(f"connection failed ({type(exc).__name__}: {exc})") from None
        except httpx.DecodingError as exc:  # a corrupt compressed body: as good as a truncated one
            raise TransientError(f"undecodable body ({exc})") from None
        try:
            page = read(status, headers, body)
        except TransientError as exc:
            if self.budget is not None and status == 429:  # slow every thread down, not just this one
                self.budget.throttled(exc.retry_after)
            raise
        if self.budget is not None:
            self.budget.answered()
        return page

    def _exchange(self, content: bytes) -> tuple[int, httpx.Headers, bytes]:
        """One request's status, headers and (decoded) body.

        The body is read from the stream rather than with `Response.read()`: an httpx response and
        its stream refer to each other, so the response lives on until the garbage collector's
        rare full pass, and with it any body stored on it, a megabyte a page (measured: a 600,000-
        order backfill's peak RSS rose in a sawtooth from 120 to 154 MiB and back).
        """
        with self.http.stream(
            self.method, self.endpoint_path, content=content, headers={"Content-Type": "application/json"}
        ) as response:
            return response.status_code, response.headers, b"".join(response.iter_bytes())

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return min(exc.retry_after, self.retry.retry_after_cap)
        return wait_random_exponential(multiplier=self.retry.backoff_base, max=self.retry.backoff_max)(state)

    def _log_retry(self, state: RetryCallState) -> None:
        with _STATS_LOCK:
            self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0
        log.warning("kapture.retry", attempt=state.attempt_number, error=str(exc), wait_s=round(wait, 2))


def _message(body: Mapping[str, Any]) -> str:
    for key in ("message", "Message", "error", "msg"):
        if isinstance(body.get(key), str) and body[key].strip():
            return body[key].strip()
    return "no message"


def _flag(body: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        for variant in (key, key.capitalize(), key.upper()):
            if variant in body and body[variant] is not None:
                return str(body[variant]).strip().lower()
    return None


def retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """`Retry-After` in seconds, whether sent as seconds or as an HTTP date; None when absent or unreadable."""
    value = headers.get("retry-after")
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None  # neither form: fall back to exponential backoff
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(tz=UTC))).total_seconds())


def first_bytes(content: bytes, limit: int = 80) -> str:
    """The start of a body, as shown in a message: printable, on one line."""
    text = content[:limit].decode("utf-8", "replace")
    shown = "".join(ch if ch.isprintable() else " " for ch in text)
    return repr(" ".join(shown.split()) + ("..." if len(content) > limit else ""))


def judge(status: int, headers: Mapping[str, str], content: bytes) -> Page:
    """Turn one HTTP answer into a page of records or the right kind of failure."""
    if status == 429:
        raise TransientError("rate limited (HTTP 429)", retry_after=retry_after(headers))
    if status == 408:  # the server gave up waiting for the request: retried, but it is no rate limit
        message = "the server timed out waiting for the request (HTTP 408)"
        raise TransientError(message, retry_after=retry_after(headers))
    if status >= 500:
        raise TransientError(f"HTTP {status}", retry_after=retry_after(headers))
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        if status in (401, 403):
            raise CredentialsRejected(f"credentials rejected by Kapture (HTTP {status})") from None
        if 200 <= status < 300:
            raise TransientError(
                f"truncated or non-JSON body ({len(content)} bytes, starting {first_bytes(content)})"
            ) from None
        raise KaptureRejected(f"Kapture refused the request (HTTP {status})") from None
    if not isinstance(body, dict):
        raise TransientError(
            f"unrecognisable page: JSON {type(body).__name__} instead of an object, starting {first_bytes(content)}",
            final=KaptureRejected,
        )
    failed = _flag(body, "status") == "failed" or _flag(body, "success") == "false"
    message = _message(body)
    if status in (401, 403) or (failed and any(w in message.lower() for w in _AUTH_WORDS)):
        raise CredentialsRejected(f"credentials rejected by Kapture ({message})")
    if status >= 400:
        raise KaptureRejected(f"Kapture refused the request (HTTP {status}: {message})")
    if failed:
        if any(w in message.lower() for w in _REQUEST_WORDS):
            raise KaptureRejected(f"Kapture refused the request ({message})")
        # Not about the credentials or the request: Kapture's "try again later", retried like a 5xx.
        raise TransientError(message, final=KaptureRejected)
    details = next((body[k] for k in ("order_details", "orderDetails", "Order_details") if k in body), None)
    if isinstance(details, list):
        return Page(details)
    if _flag(body, "success") == "true" or _flag(body, "status") == "success":
        # A string (or nothing) where the list belongs means "no data" on a successful answer.
        return Page([], note=details if isinstance(details, str) else _message(body))
    raise TransientError(
        f"unrecognisable page: an answer of unknown shape (keys: {', '.join(sorted(body)[:8])}), "
        f"starting {first_bytes(content)}",
        final=KaptureRejected,
    )


def make_http_client(settings: Settings, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """Keep-alive client with timeouts; the secret header is set once and never logged."""
    return httpx.Client(
        base_url=settings.base_url,
        headers={"Authorization": settings.authorization.get_secret_value(), "Accept": "application/json"},
        timeout=httpx.Timeout(settings.timeout, connect=min(settings.timeout, 10.0)),
        limits=httpx.Limits(
            max_keepalive_connections=max(4, settings.concurrency), max_connections=max(8, settings.concurrency * 2)
        ),
        transport=transport,
        follow_redirects=False,
    )


def make_client(settings: Settings, http: httpx.Client) -> KaptureClient:
    return KaptureClient(
        http=http,
        cm_id=settings.cm_id,
        endpoint_path=settings.endpoint_path,
        method=settings.http_method,
        numbers_as_strings=settings.numbers_as_strings,
        sort_param=settings.sort_param,
        retry=RetryPolicy(
            max_attempts=settings.max_attempts,
            max_seconds=settings.retry_max_seconds,
            backoff_base=settings.backoff_base,
            backoff_max=settings.backoff_max,
        ),
        budget=shared_budget(settings.requests_per_second),
    )
