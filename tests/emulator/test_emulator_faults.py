"""Every fault kind and standing setting, as an HTTP client experiences it."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from sync.emulator import Emulator, EmulatorConfig, Faults

CM_ID = 1000298
ALL = {"cmId": CM_ID, "createStartDate": "2000-01-01", "limit": "20"}


def test_queued_5xx_faults_hit_the_next_requests_then_stop(emu):
    emulator, client = emu
    emulator.faults.push("503", 2)
    emulator.faults.push("500")
    emulator.faults.push("502")
    statuses = [client.send(ALL).status_code for _ in range(5)]
    assert statuses == [503, 503, 500, 502, 200]
    assert emulator.stats()["faults"] == {"503": 2, "500": 1, "502": 1}


def test_gateway_errors_look_like_a_proxy_page_and_500_is_json(emu):
    emulator, client = emu
    emulator.faults.push("502")
    emulator.faults.push("500")
    gateway = client.send(ALL)
    assert gateway.headers["content-type"] == "text/html" and "502 Bad Gateway" in gateway.text
    assert client.send(ALL).json()["status"] == "failed"


def test_429_carries_retry_after(emu):
    emulator, client = emu
    emulator.faults.push("429")
    response = client.send(ALL)
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    emulator.faults.retry_after_seconds = 7
    emulator.faults.push("429")
    assert client.send(ALL).headers["retry-after"] == "7"
    assert client.send(ALL).status_code == 200


def test_truncated_body_is_an_error_for_httpx_and_the_next_request_works(emu):
    emulator, client = emu
    emulator.faults.push("truncate")
    with pytest.raises(httpx.RemoteProtocolError):
        client.send(ALL)
    assert len(client.pull(**{k: v for k, v in ALL.items() if k != "cmId"})) == 20


def test_bad_json_is_a_complete_200_whose_body_does_not_parse(emu):
    emulator, client = emu
    emulator.faults.push("bad_json")
    response = client.send(ALL)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content) > 0
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)
    assert response.content.startswith(b'{"success":"true","order_details":[')
    assert client.send(ALL).json()["success"] == "true"  # same connection still fine


def test_failed_body_comes_with_http_200(emu):
    emulator, client = emu
    emulator.faults.push("failed_body")
    response = client.send(ALL)
    assert response.status_code == 200
    assert response.json() == {"message": "Something went wrong. Please try again later.", "status": "failed"}


def test_disconnect_closes_without_a_response(emu):
    emulator, client = emu
    emulator.faults.push("disconnect")
    with pytest.raises(httpx.RemoteProtocolError):
        client.send(ALL)
    assert client.send(ALL).status_code == 200


def test_timeout_stalls_longer_than_a_short_client_timeout_then_answers(emu):
    emulator, client = emu
    emulator.faults.slow_seconds = 0.6
    emulator.faults.push("timeout")
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.send(ALL, timeout=0.2)
    assert time.monotonic() - started < 0.5
    emulator.faults.push("timeout")
    started = time.monotonic()
    response = client.send(ALL, timeout=3)  # a patient client gets the normal answer
    assert time.monotonic() - started >= 0.6
    assert len(response.json()["order_details"]) == 20


def test_latency_is_added_to_every_pull(emu):
    emulator, client = emu
    emulator.faults.latency_ms = 150
    started = time.monotonic()
    for _ in range(3):
        assert client.send(ALL).status_code == 200
    assert time.monotonic() - started >= 0.45
    emulator.faults.latency_ms = 0
    started = time.monotonic()
    client.send(ALL)
    assert time.monotonic() - started < 0.15


def test_limit_cap_silently_shortens_pages(emu):
    emulator, client = emu
    emulator.faults.limit_cap = 7
    assert len(client.pull(createStartDate="2000-01-01", limit="50")) == 7
    assert len(client.pull(createStartDate="2000-01-01", limit="5")) == 5
    emulator.faults.limit_cap = None
    assert len(client.pull(createStartDate="2000-01-01", limit="50")) == 50


def test_newest_first_orders_by_create_date_descending_and_offset_paging_drifts(emu):
    emulator, client = emu
    emulator.faults.newest_first = True
    page1 = client.pull(createStartDate="2000-01-01", limit=10, offset=0)
    dates = [o["createDate"] for o in page1]
    assert dates == sorted(dates, reverse=True)
    assert page1[0]["createDate"] == max(o["createDate"] for o in emulator.store.truth())
    emulator.store.create(3)  # orders arrive mid-scan
    page2 = client.pull(createStartDate="2000-01-01", limit=10, offset=10)
    assert [o["id"] for o in page2[:3]] == [o["id"] for o in page1[-3:]]  # seen twice
    emulator.faults.newest_first = False
    first = client.pull(createStartDate="2000-01-01", limit=5)
    assert [o["createDate"] for o in first] == sorted(o["createDate"] for o in first)


def test_newest_first_offset_paging_without_arrivals_yields_each_order_once_newest_first(emu):
    emulator, client = emu
    emulator.faults.newest_first = True
    emulator.faults.limit_cap = 7
    seen, offset = [], 0
    while page := client.pull(createStartDate="2000-01-01", limit=50, offset=offset):
        seen.extend(page)
        offset += len(page)
    expected = sorted(emulator.store.truth(), key=lambda o: (o["createDate"], o["id"]), reverse=True)
    assert seen == expected


def test_clear_restores_a_healthy_server(emu):
    emulator, client = emu
    emulator.faults.push("503", 5)
    emulator.faults.limit_cap = 3
    emulator.faults.newest_first = True
    emulator.faults.latency_ms = 500
    emulator.faults.clear()
    started = time.monotonic()
    page = client.pull(createStartDate="2000-01-01", limit=10)
    assert len(page) == 10 and time.monotonic() - started < 0.4
    assert page[0]["createDate"] == min(o["createDate"] for o in emulator.store.truth())


def test_fault_rates_are_drawn_from_the_seed(serve):
    def statuses(seed: int) -> list[int]:
        emulator, client = serve(EmulatorConfig(orders=20, seed=seed))
        emulator.faults.rates = {"503": 0.3, "429": 0.2}
        return [client.send(ALL).status_code for _ in range(60)]

    first, again, other = statuses(11), statuses(11), statuses(12)
    assert first == again
    assert first != other
    assert 8 <= first.count(503) <= 32 and 3 <= first.count(429) <= 24 and first.count(200) >= 15


def test_fault_settings_are_validated():
    faults = Faults()
    with pytest.raises(ValueError):
        faults.push("418")
    with pytest.raises(ValueError):
        faults.rates = {"503": 0.7, "500": 0.5}
    with pytest.raises(ValueError):
        faults.limit_cap = 0
    with pytest.raises(ValueError):
        faults.update({"latency_ms": 5, "newest_first": "yes"})
    assert faults.latency_ms == 0  # all-or-nothing
    with pytest.raises(ValueError):
        faults.update({"no_such_setting": 1})


def test_faults_only_hit_pull_requests(emu):
    emulator, client = emu
    emulator.faults.push("503")
    assert client.http.get("/_emulator/stats").status_code == 200
    assert client.send(ALL).status_code == 503


def test_faults_apply_before_auth(emu):
    """An overloaded gateway answers 503 whatever the credentials."""
    emulator, client = emu
    emulator.faults.push("503")
    assert client.send(ALL, auth=("demo", "wrong")).status_code == 503
    assert client.send(ALL, auth=("demo", "wrong")).json()["message"] == "Invalid Auth Key"


def test_emulator_exposes_faults_and_counts_them():
    emulator = Emulator(EmulatorConfig(orders=5))
    emulator.faults.push("bad_json", 2)
    assert emulator.faults.pending() == ["bad_json", "bad_json"]
    assert emulator.faults.take() == "bad_json"
    assert emulator.stats()["faults"] == {"bad_json": 1}
    emulator.reset_stats()
    assert emulator.stats()["faults"] == {}
