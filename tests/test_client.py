"""The client against the emulator over real HTTP, and `judge()` on every odd shape Kapture uses."""

from __future__ import annotations

import gc
import time

import httpx
import orjson
import pytest

from sync.client import judge
from sync.errors import CredentialsRejected, KaptureRejected, KaptureUnavailable, TransientError
from tests.conftest import settings_for

TODAY_WIDE = {"createStartDate": "2000-01-01", "createEndDate": "2100-01-01"}


def test_pull_sends_the_documented_body_and_reads_a_page(emulator, connect):
    emu, serving = emulator
    client = connect(settings_for(serving.url))
    assert client.body(TODAY_WIDE, 40, 20) == {"cmId": 1000298, **TODAY_WIDE, "limit": "20", "offset": "40"}
    page = client.pull(TODAY_WIDE, 0, 25)
    assert len(page.records) == 25
    assert page.records == sorted(emu.store.truth(), key=lambda r: (r["createDate"], r["id"]))[:25]


def test_a_page_body_is_not_kept_alive_after_the_page_is_read(emulator, connect):
    """An httpx response and its stream refer to each other, so a response outlives its request until
    the garbage collector's rare full pass; a body stored on it (a megabyte a page) would stay too,
    and a backfill's memory would climb in a sawtooth. Nothing of the body may be left on it."""
    _, serving = emulator
    client = connect(settings_for(serving.url))
    gc.collect()
    gc.disable()  # what the collector would find late is found now, before it runs
    try:
        page = client.pull(TODAY_WIDE, 0, 500)
        responses = [o for o in gc.get_objects() if isinstance(o, httpx.Response)]
        held = [v for r in responses for v in vars(r).values() if isinstance(v, bytes | bytearray) and len(v) > 1000]
    finally:
        gc.enable()
    assert len(page.records) == 500
    assert responses, "the response is still in memory, as the collector has not run"
    assert not held, f"{sum(map(len, held))} bytes of body kept on a finished response"


def test_a_408_is_retried_and_named_as_a_timeout_not_a_rate_limit():
    with pytest.raises(TransientError, match=r"timed out waiting for the request \(HTTP 408\)") as timed_out:
        judge(408, httpx.Headers({"Retry-After": "2"}), b"")
    assert timed_out.value.retry_after == 2.0
    with pytest.raises(TransientError, match=r"rate limited \(HTTP 429\)"):
        judge(429, {}, b"")


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_both_http_methods_get_the_same_answer(emulator, connect, method):
    _, serving = emulator
    client = connect(settings_for(serving.url, http_method=method))
    assert len(client.pull(TODAY_WIDE, 0, 10).records) == 10


def test_retry_after_is_honoured_on_429(emulator, connect):
    emu, serving = emulator
    emu.faults.retry_after_seconds = 1
    emu.faults.push("429")
    client = connect(settings_for(serving.url))
    started = time.monotonic()
    assert client.pull(TODAY_WIDE, 0, 5).records
    assert time.monotonic() - started >= 0.95
    assert client.stats.requests == 2


@pytest.mark.parametrize("kind", ["500", "502", "503", "truncate", "bad_json", "disconnect", "timeout"])
def test_transient_faults_are_retried(emulator, connect, kind):
    emu, serving = emulator
    emu.faults.slow_seconds = 1.0
    emu.faults.push(kind, 2)
    client = connect(settings_for(serving.url, timeout=0.4))
    assert len(client.pull(TODAY_WIDE, 0, 5).records) == 5
    assert client.stats.requests == 3 and client.stats.retries == 2


def test_retries_are_bounded_and_end_in_one_named_error(emulator, connect):
    emu, serving = emulator
    emu.faults.push("503", 10)
    client = connect(settings_for(serving.url, max_attempts=3))
    with pytest.raises(KaptureUnavailable, match="after 3 attempts: HTTP 503"):
        client.pull(TODAY_WIDE, 0, 5)
    assert client.stats.requests == 3


def test_retries_stop_at_the_time_budget(emulator, connect):
    emu, serving = emulator
    emu.faults.retry_after_seconds = 1
    emu.faults.push("429", 10)
    client = connect(settings_for(serving.url, max_attempts=10, retry_max_seconds=1.5))
    started = time.monotonic()
    with pytest.raises(KaptureUnavailable):
        client.pull(TODAY_WIDE, 0, 5)
    assert time.monotonic() - started < 1.6, "the time budget includes the waits"
    assert client.stats.requests == 2


@pytest.mark.parametrize("status", [200, 401])
def test_wrong_credentials_are_permanent(start_emulator, connect, status):
    _, serving = start_emulator(auth_failure_status=status)
    client = connect(settings_for(serving.url, password="wrong"))
    with pytest.raises(CredentialsRejected, match="Invalid Auth Key"):
        client.pull(TODAY_WIDE, 0, 5)
    assert client.stats.requests == 1


def test_a_ready_made_token_is_accepted(emulator, connect):
    import base64

    _, serving = emulator
    token = base64.b64encode(b"demo:demo").decode()
    client = connect(settings_for(serving.url, username=None, password=None, auth_token=token))
    assert client.pull(TODAY_WIDE, 0, 1).records


def test_a_foreign_account_is_refused_with_the_servers_message(emulator, connect):
    _, serving = emulator
    client = connect(settings_for(serving.url, cm_id=5))
    with pytest.raises(KaptureRejected, match="cmId 5"):
        client.pull(TODAY_WIDE, 0, 1)


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


def test_a_corrupt_compressed_body_is_retried(serve, connect):
    import gzip

    pages = iter([b"definitely not gzip", gzip.compress(orjson.dumps({"success": "true", "order_details": []}))])
    url = serve(lambda body: [], raw=lambda: (next(pages), {"Content-Encoding": "gzip"}))
    client = connect(settings_for(url))
    assert client.pull(TODAY_WIDE, 0, 5).records == []
    assert client.stats.requests == 2


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
    from datetime import UTC, datetime

    from sync.client import retry_after

    now = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after(httpx.Headers({"Retry-After": "7"}), now) == 7.0
    assert retry_after(httpx.Headers({"Retry-After": "Fri, 01 May 2026 12:00:05 GMT"}), now) == 5.0
    assert retry_after(httpx.Headers({"Retry-After": "Fri, 01 May 2026 11:00:00 GMT"}), now) == 0.0
    assert retry_after(httpx.Headers({"Retry-After": "soon"}), now) is None
    assert retry_after(httpx.Headers({}), now) is None


def test_retry_after_as_an_http_date_is_honoured(emulator, connect):
    emu, serving = emulator
    emu.faults.retry_after_seconds = 2
    emu.faults.push("429_date")
    client = connect(settings_for(serving.url))
    started = time.monotonic()
    assert client.pull(TODAY_WIDE, 0, 5).records
    assert time.monotonic() - started >= 0.9, "an HTTP date 2 s ahead (whole seconds) waits at least 1 s"
    assert client.stats.requests == 2


@pytest.mark.parametrize("kind", ["failed_body", "html", "list_body", "429_date"])
def test_new_transient_kinds_are_retried_over_http(emulator, connect, kind):
    emu, serving = emulator
    emu.faults.retry_after_seconds = 0
    emu.faults.push(kind, 2)
    client = connect(settings_for(serving.url))
    assert len(client.pull(TODAY_WIDE, 0, 5).records) == 5
    assert client.stats.requests == 3 and client.stats.retries == 2


@pytest.mark.parametrize(
    ("kind", "error", "shown"),
    [
        ("html", KaptureUnavailable, "starting '<!DOCTYPE html><html><head><title>Maintenance"),
        ("list_body", KaptureRejected, "JSON list instead of an object, starting '[{\"message\""),
        ("failed_body", KaptureRejected, "after 3 attempts: Something went wrong. Please try again later."),
    ],
)
def test_an_unrecognisable_page_fails_with_its_first_bytes_after_the_retries(emulator, connect, kind, error, shown):
    emu, serving = emulator
    emu.faults.push(kind, 5)
    client = connect(settings_for(serving.url, max_attempts=3))
    with pytest.raises(error) as caught:
        client.pull(TODAY_WIDE, 0, 5)
    assert shown in str(caught.value)
    assert client.stats.requests == 3


def test_a_refused_body_is_not_retried(emulator, connect):
    emu, serving = emulator
    emu.faults.push("refused_body", 5)
    client = connect(settings_for(serving.url))
    with pytest.raises(KaptureRejected, match="Invalid request"):
        client.pull(TODAY_WIDE, 0, 5)
    assert client.stats.requests == 1
