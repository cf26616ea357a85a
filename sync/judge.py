"""Judging one HTTP answer of the Pull Order API: a page of records, a retryable fault, or a permanent refusal.

Kapture reports failures in odd shapes (`status`/`Status`, `message`/`Message`, a string where a
list belongs, HTTP 200 with `"status": "failed"`), so every answer goes through `judge()`, which
turns it into records, a retryable `TransientError`, or a permanent `SyncError`. Apart from the
client so that the worker process (`sync.worker`), which judges the bodies of large pages, loads
neither httpx nor the settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from sync import jsontext
from sync.errors import CredentialsRejected, KaptureRejected, TransientError

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
class Page:
    records: list[Any]
    note: str | None = None  # a "no data" message Kapture sent instead of a list


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


def _loads(loads: Callable[[bytes], Any], content: bytes) -> Any:
    """`content` parsed by `loads`, else salvaged (`jsontext.loads_salvaged`): one record whose text or
    numbers are spoiled is rejected alone rather than failing its page, and so every later run."""
    try:
        return loads(content)
    except ValueError:
        return jsontext.loads_salvaged(content)


def judge(
    status: int, headers: Mapping[str, str], content: bytes, loads: Callable[[bytes], Any] = orjson.loads
) -> Page:
    """Turn one HTTP answer into a page of records or the right kind of failure.

    `loads` parses the body: `jsontext.loads_exact` reads a page again keeping big integers exact.
    """
    if status == 429:
        raise TransientError("rate limited (HTTP 429)", retry_after=retry_after(headers))
    if status == 408:  # the server gave up waiting for the request: retried, but it is no rate limit
        message = "the server timed out waiting for the request (HTTP 408)"
        raise TransientError(message, retry_after=retry_after(headers))
    if status >= 500:
        raise TransientError(f"HTTP {status}", retry_after=retry_after(headers))
    try:
        body = _loads(loads, content)
    except ValueError:  # orjson's JSONDecodeError, json's, and what `loads_exact` refuses
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
