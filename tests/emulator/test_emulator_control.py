"""The /_emulator/ control surface, the live ticker and the command line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import orjson
import pytest

from sync.emulator import Emulator, EmulatorConfig

CM_ID = 1000298
ALL = {"createStartDate": "2000-01-01", "limit": 10_000}


def test_truth_and_stats_over_http(emu):
    emulator, client = emu
    truth = client.http.get("/_emulator/truth")
    assert truth.status_code == 200 and truth.json() == emulator.store.truth()
    client.pull(**ALL)
    stats = client.http.get("/_emulator/stats").json()
    assert stats["pull_requests"] == 1 and stats["orders_served"] == 400 and stats["orders"] == 400
    reset = client.http.delete("/_emulator/stats").json()
    assert reset["pull_requests"] == 0 and reset["orders_served"] == 0


def test_create_and_edit_over_http(emu):
    emulator, client = emu
    created = client.http.post("/_emulator/orders", json={"count": 4}).json()["created"]
    assert len(created) == 4 and len(emulator.store.truth()) == 404
    assert client.pull(orderIds=",".join(str(o["id"]) for o in created)) == created

    edited = client.http.post("/_emulator/edits", json={"ids": [created[0]["id"]]}).json()["edited"]
    assert edited[0]["lastModificationTime"] > created[0]["lastModificationTime"]
    assert emulator.store.get(created[0]["id"]) == edited[0]

    old = client.http.post("/_emulator/edits", json={"count": 3, "old": True}).json()["edited"]
    week_ago = emulator.store.now_ms() - 7 * 86_400_000
    assert len(old) == 3 and all(o["createDate"] < week_ago for o in old)

    bad = client.http.post("/_emulator/orders", json={"malformed": "missing_id"}).json()["created"][0]
    assert "id" not in bad and bad in emulator.store.truth()


def test_faults_over_http(emu):
    emulator, client = emu
    settings = client.http.put(
        "/_emulator/faults",
        json={"limit_cap": 3, "newest_first": True, "retry_after_seconds": 4, "push": [{"kind": "429", "count": 1}]},
    ).json()
    assert settings["limit_cap"] == 3 and settings["newest_first"] is True and settings["pending"] == ["429"]
    throttled = client.send({"cmId": CM_ID, **ALL})
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "4"
    page = client.pull(**ALL)
    assert len(page) == 3 and page[0]["createDate"] >= page[-1]["createDate"]
    assert client.http.get("/_emulator/faults").json()["limit_cap"] == 3
    cleared = client.http.delete("/_emulator/faults").json()
    assert cleared["limit_cap"] is None and cleared["newest_first"] is False
    assert len(client.pull(**ALL)) == 400
    assert client.http.get("/_emulator/stats").json()["faults"] == {"429": 1}


def test_edits_with_keep_stamp_over_http(emu):
    emulator, client = emu
    target = emulator.store.truth()[5]
    body = {"ids": [target["id"]], "keep_stamp": True}
    edited = client.http.post("/_emulator/edits", json=body).json()["edited"][0]
    assert edited["lastModificationTime"] == target["lastModificationTime"]
    assert edited["deliveryStatus"] != target["deliveryStatus"] and emulator.store.get(target["id"]) == edited
    old = client.http.post("/_emulator/edits", json={"count": 2, "old": True, "keep_stamp": True}).json()["edited"]
    assert len(old) == 2 and all(o == emulator.store.get(o["id"]) for o in old)


def test_stats_count_requests_by_http_method(emu):
    emulator, client = emu
    client.pull(**ALL)
    client.send({"cmId": CM_ID, **ALL}, method="GET")
    client.send({"cmId": CM_ID, **ALL}, method="GET")
    client.send({"cmId": CM_ID, **ALL}, method="PUT")  # refused with 405, but still a request
    client.http.get("/_emulator/stats")  # control requests are not counted by method
    stats = client.http.get("/_emulator/stats").json()
    assert stats["methods"] == {"POST": 1, "GET": 2, "PUT": 1} == emulator.stats()["methods"]
    assert sum(stats["methods"].values()) == stats["requests"]
    assert client.http.delete("/_emulator/stats").json()["methods"] == {}


def test_request_log_shows_method_window_offset_and_limit_of_each_pull(emu):
    emulator, client = emu
    start = client.http.get("/_emulator/requests").json()["last_seq"]
    client.pull(createStartDate="2024-05-01", createEndDate="2024-05-02", offset=40, limit="20")
    emulator.faults.push("503")
    client.send({"cmId": CM_ID, "createStartDate": "2024-05-03", "limit": 5}, method="GET")
    client.send(b"not json")
    client.http.post("/_emulator/orders", json={"count": 1})  # control requests are not logged
    log = client.http.request("GET", "/_emulator/requests", json={"since": start}).json()
    assert log["capacity"] == 10_000 and log["last_seq"] == start + 3
    assert [{k: v for k, v in e.items() if k not in ("seq", "at")} for e in log["requests"]] == [
        {
            "method": "POST",
            "createStartDate": "2024-05-01",
            "createEndDate": "2024-05-02",
            "offset": 40,
            "limit": "20",
            "fault": None,
        },
        {
            "method": "GET",
            "createStartDate": "2024-05-03",
            "createEndDate": None,
            "offset": None,
            "limit": 5,
            "fault": "503",
        },
        {
            "method": "POST",
            "createStartDate": None,
            "createEndDate": None,
            "offset": None,
            "limit": None,
            "fault": None,
        },
    ]
    assert [e["seq"] for e in log["requests"]] == [start + 1, start + 2, start + 3]
    later = client.http.request("GET", "/_emulator/requests", json={"since": start + 2}).json()["requests"]
    assert [e["seq"] for e in later] == [start + 3]
    client.http.delete("/_emulator/stats")  # a reset empties the log; sequence numbers keep growing
    client.pull(**ALL)
    after = client.http.get("/_emulator/requests").json()
    assert [e["seq"] for e in after["requests"]] == [start + 4]
    bad = client.http.request("GET", "/_emulator/requests", json={"since": -1})
    assert bad.status_code == 400 and "since" in bad.json()["message"]


def test_request_log_keeps_only_the_last_entries():
    from sync.emulator.stats import ServerStats

    stats = ServerStats(log_size=3)
    for offset in range(5):
        stats.log_pull("POST", orjson.dumps({"offset": offset}), None)
    log = stats.pull_log()
    assert [e["offset"] for e in log["requests"]] == [2, 3, 4] and log["last_seq"] == 5
    assert [e["offset"] for e in stats.pull_log(since=4)["requests"]] == [4]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/_emulator/nothing", None, 404),
        ("POST", "/_emulator/truth", {}, 405),
        ("POST", "/_emulator/orders", {"count": -1}, 400),
        ("POST", "/_emulator/orders", {"count": "3"}, 400),
        ("POST", "/_emulator/orders", {"malformed": "upside_down"}, 400),
        ("POST", "/_emulator/edits", {"ids": [1, 2]}, 400),
        ("POST", "/_emulator/edits", {"ids": "1"}, 400),
        ("POST", "/_emulator/edits", {"count": 1, "keep_stamp": "yes"}, 400),
        ("POST", "/_emulator/requests", {}, 405),
        ("PUT", "/_emulator/faults", {"limit_cap": -5}, 400),
        ("PUT", "/_emulator/faults", {"push": [{"kind": "teapot"}]}, 400),
        ("PUT", "/_emulator/faults", {"rates": {"503": 2}}, 400),
        ("PUT", "/_emulator/faults", [1], 400),
    ],
)
def test_bad_control_requests_get_clear_errors(emu, method, path, body, status):
    emulator, client = emu
    response = client.http.request(method, path, json=body)
    assert response.status_code == status
    assert response.json()["status"] == "failed" and response.json()["message"]
    assert emulator.faults.settings()["limit_cap"] is None and emulator.faults.pending() == []
    assert len(emulator.store.truth()) == 400


def test_control_requests_do_not_count_as_pull_requests(emu):
    emulator, client = emu
    for _ in range(3):
        client.http.get("/_emulator/stats")
    assert emulator.stats()["pull_requests"] == 0 and emulator.stats()["control_requests"] == 3


def _non_loopback_ipv4() -> str | None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.123", 9))  # no packet is sent for UDP connect
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def test_control_surface_is_only_answered_on_loopback():
    address = _non_loopback_ipv4()
    if address is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    emulator = Emulator(EmulatorConfig(orders=5))
    with emulator.serve(host="0.0.0.0", port=0) as running:
        remote = httpx.Client(base_url=f"http://{address}:{running.port}", timeout=3)
        local = httpx.Client(base_url=f"http://127.0.0.1:{running.port}", timeout=3)
        try:
            assert remote.get("/_emulator/truth").status_code == 404
            assert remote.post("/_emulator/orders", json={"count": 5}).status_code == 404
            assert len(emulator.store.truth()) == 5
            assert local.get("/_emulator/truth").status_code == 200
            # the API itself is served to everyone
            body = {"cmId": CM_ID, "createStartDate": "2000-01-01"}
            assert (
                len(remote.post(Emulator.endpoint_path, json=body, auth=("demo", "demo")).json()["order_details"]) == 5
            )
        finally:
            remote.close()
            local.close()


def test_live_ticker_creates_and_edits_orders_over_time(serve):
    config = EmulatorConfig(
        orders=300, days=20, new_orders_per_minute=1200, edits_per_minute=1800, old_edit_fraction=0.3
    )
    emulator, client = serve(config)
    before = {o["id"]: o for o in emulator.store.truth()}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        truth = emulator.store.truth()
        new = [o for o in truth if o["id"] not in before]
        edited = [o for o in truth if o["id"] in before and o != before[o["id"]]]
        week_ago = emulator.store.now_ms() - 7 * 86_400_000
        if len(new) >= 20 and len(edited) >= 30 and any(o["createDate"] < week_ago for o in edited):
            break
        time.sleep(0.1)
    assert len(new) >= 20, len(new)
    assert len(edited) >= 30, len(edited)
    assert sum(o["createDate"] >= week_ago for o in edited) > sum(o["createDate"] < week_ago for o in edited) > 0
    assert all(o["lastModificationTime"] > before[o["id"]]["lastModificationTime"] for o in edited)
    # new orders are served like any other
    assert set(client.pull_ids(orderIds=",".join(str(o["id"]) for o in new[:5]))) == {o["id"] for o in new[:5]}


def test_no_ticker_without_rates(emu):
    emulator, _ = emu
    before = emulator.store.truth()
    time.sleep(0.3)
    assert emulator.store.truth() == before


def _start_cli(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    code = "from sync.emulator.cli import emulator_command; emulator_command()"
    process = subprocess.Popen(
        [sys.executable, "-c", code, "--port", "0", "--orders", "30", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(4)]
    return process, lines


def test_cli_prints_url_and_env_lines_serves_and_exits_0_on_sigterm():
    process, lines = _start_cli("--cm-id", "777", "--username", "ops", "--limit-cap", "4", "--seed", "3")
    try:
        assert lines[0].startswith("Kapture emulator listening on http://127.0.0.1:")
        assert "(cm_id=777, user=ops)" in lines[0]
        url = lines[0].split("listening on ")[1].split()[0]
        assert lines[1:] == [
            f"export KAPTURE_BASE_URL={url}\n",
            "export KAPTURE_USERNAME=ops\n",
            "export KAPTURE_PASSWORD=demo\n",
        ]
        body = {"cmId": 777, "createStartDate": "2000-01-01", "limit": 10}
        response = httpx.post(url + Emulator.endpoint_path, json=body, auth=("ops", "demo"), timeout=5)
        assert len(response.json()["order_details"]) == 4  # --limit-cap applied
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0


def test_cli_never_prints_a_custom_password_applies_fault_rates_and_stops_on_sigint():
    process, lines = _start_cli("--password", "hunter2", "--fault", "503=1")
    try:
        assert not any("hunter2" in line for line in lines)
        assert "export KAPTURE_CM_ID=1000298\n" in lines
        url = lines[0].split("listening on ")[1].split()[0]
        body = {"cmId": CM_ID, "createStartDate": "2000-01-01"}
        assert (
            httpx.post(url + Emulator.endpoint_path, json=body, auth=("demo", "hunter2"), timeout=5).status_code == 503
        )
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
        assert "hunter2" not in process.stdout.read() + process.stderr.read()


def test_cli_rejects_a_bad_fault_option():
    code = "from sync.emulator.cli import emulator_command; emulator_command()"
    result = subprocess.run(
        [sys.executable, "-c", code, "--fault", "teapot=0.5"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and "KIND=RATE" in result.stderr


def test_cli_exports_the_settings_a_non_default_server_needs():
    process, _ = _start_cli("--end-exclusive", "--timezone", "Europe/Berlin")
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        assert lines == [
            "export KAPTURE_CM_ID=1000298\n",
            "export KAPTURE_TIMEZONE=Europe/Berlin\n",
            "export KAPTURE_END_INCLUSIVE=false\n",
        ]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
