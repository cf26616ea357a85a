"""`judge()` on every odd shape Kapture answers in: records, a retryable fault, or a permanent refusal."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import orjson
import pytest

from sync.errors import CredentialsRejected, KaptureRejected, TransientError
from sync.judge import judge, retry_after


def test_a_408_is_retried_and_named_as_a_timeout_not_a_rate_limit():
    with pytest.raises(TransientError, match=r"timed out waiting for the request \(HTTP 408\)") as timed_out:
        judge(408, httpx.Headers({"Retry-After": "2"}), b"")
    assert timed_out.value.retry_after == 2.0
    with pytest.raises(TransientError, match=r"rate limited \(HTTP 429\)"):
        judge(429, {}, b"")


def _judge(body: object, status: int = 200, headers: dict[str, str] | None = None):
    return judge(status, httpx.Headers(headers or {}), orjson.dumps(body))


@pytest.mark.parametrize(
    "body",
    [
        {"Message": "Invalid Auth Key", "Status": "failed"},
        {"message": "Authorization key expired", "status": "FAILED"},
        {"success": "false", "message": "Token disabled"},
    ],
)
def test_judge_reads_capitalised_and_lower_case_auth_failures(body):
    with pytest.raises(CredentialsRejected):
        _judge(body)


def test_judge_treats_a_string_where_the_list_belongs_as_no_data():
    page = _judge({"success": "true", "order_details": "No data found"})
    assert page.records == [] and page.note == "No data found"
    assert _judge({"success": True, "order_details": [{"id": 1}]}).records == [{"id": 1}]


def test_judge_retries_an_unknown_shape_instead_of_guessing():
    with pytest.raises(TransientError, match="unknown shape") as caught:
        _judge({"data": []})
    assert caught.value.final is KaptureRejected
    with pytest.raises(KaptureRejected, match="HTTP 400: cmId is required"):
        _judge({"message": "cmId is required", "status": "failed"}, status=400)


def test_judge_marks_server_errors_and_garbage_as_transient():
    with pytest.raises(TransientError) as caught:
        _judge({"message": "busy"}, status=429, headers={"Retry-After": "7"})
    assert caught.value.retry_after == 7.0
    with pytest.raises(TransientError):
        judge(200, httpx.Headers(), b'{"success": "true", "order_det')
    with pytest.raises(TransientError):
        _judge({"message": "oops"}, status=503)


@pytest.mark.parametrize(
    "message",
    ["Something went wrong. Please try again later.", "Internal error, please retry", "Service busy", "no message"],
)
def test_a_failed_body_not_about_credentials_or_the_request_is_transient(message):
    body = {"message": message, "status": "failed"} if message != "no message" else {"status": "failed"}
    with pytest.raises(TransientError) as caught:
        _judge(body)
    assert caught.value.final is KaptureRejected


@pytest.mark.parametrize(
    "message",
    [
        "cmId is required and must be > 0",
        "createStartDate '2024-13-01' is not a valid date: use YYYY-MM-DD",
        "Invalid JSON body",
        "cmId 5 is not this account",
        "At least one filter is required besides cmId",
        "Date range should not exceed 31 days",
    ],
)
def test_a_failed_body_about_the_request_is_permanent(message):
    with pytest.raises(KaptureRejected, match="refused the request"):
        _judge({"message": message, "status": "failed"})


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after(httpx.Headers({"Retry-After": "7"}), now) == 7.0
    assert retry_after(httpx.Headers({"Retry-After": "Fri, 01 May 2026 12:00:05 GMT"}), now) == 5.0
    assert retry_after(httpx.Headers({"Retry-After": "Fri, 01 May 2026 11:00:00 GMT"}), now) == 0.0
    assert retry_after(httpx.Headers({"Retry-After": "soon"}), now) is None
    assert retry_after(httpx.Headers({}), now) is None
