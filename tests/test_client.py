"""The client against the emulator over real HTTP: the documented body, retries, their bounds, the answers it keeps."""

from __future__ import annotations

import gc
import time

import httpx
import orjson
import pytest

from sync.errors import CredentialsRejected, KaptureRejected, KaptureUnavailable
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


def test_a_corrupt_compressed_body_is_retried(serve, connect):
    import gzip

    pages = iter([b"definitely not gzip", gzip.compress(orjson.dumps({"success": "true", "order_details": []}))])
    url = serve(lambda body: [], raw=lambda: (next(pages), {"Content-Encoding": "gzip"}))
    client = connect(settings_for(url))
    assert client.pull(TODAY_WIDE, 0, 5).records == []
    assert client.stats.requests == 2


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
        ("list_body", KaptureRejected, 'JSON list instead of an object, starting \'[{"message"'),
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
