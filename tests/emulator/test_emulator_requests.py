"""Auth, validation messages and request forms, as a client sees them over HTTP."""

from __future__ import annotations

import base64

import httpx
import orjson
import pytest

from sync.emulator import Emulator, EmulatorConfig
from tests.daemon_helpers import free_port

CM_ID = 1000298
WIDE = {"createStartDate": "2000-01-01"}  # a filter that matches every generated order
FAILED_AUTH = {"message": "Invalid Auth Key", "status": "failed"}


def test_right_credentials_get_orders(emu):
    emulator, client = emu
    response = client.send({"cmId": CM_ID, **WIDE, "limit": "5"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert payload["success"] == "true"
    assert len(payload["order_details"]) == 5


@pytest.mark.parametrize(
    "authorization",
    [
        None,  # no header at all
        "Basic " + base64.b64encode(b"demo:wrong").decode(),
        "Basic " + base64.b64encode(b"other:demo").decode(),
        "Basic !!!not-base64!!!",
        "Bearer " + base64.b64encode(b"demo:demo").decode(),
        "Basic",
    ],
)
def test_wrong_or_missing_credentials_get_invalid_auth_key_with_200(emu, authorization):
    _, client = emu
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.send({"cmId": CM_ID, **WIDE}, auth=None, headers=headers)
    assert response.status_code == 200
    assert response.json() == FAILED_AUTH


def test_hand_built_basic_token_is_accepted(emu):
    _, client = emu
    token = base64.b64encode(b"demo:demo").decode()
    response = client.send({"cmId": CM_ID, **WIDE, "limit": 1}, auth=None, headers={"Authorization": f"Basic {token}"})
    assert response.json()["success"] == "true"


def test_auth_failure_status_is_configurable(serve):
    _, client = serve(EmulatorConfig(orders=10, auth_failure_status=401, username="ops", password="s3cret"))
    assert client.send({"cmId": CM_ID, **WIDE}).status_code == 401  # client still sends demo:demo
    good = client.send({"cmId": CM_ID, **WIDE}, auth=("ops", "s3cret"))
    assert good.status_code == 200 and good.json()["success"] == "true"
    # validation failures use the same configured status
    assert client.send({"cmId": 5, **WIDE}, auth=("ops", "s3cret")).status_code == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "Invalid JSON body"),
        (b"{not json", "Invalid JSON body"),
        (b"\xff\xfe", "Invalid JSON body"),
        (b"[1, 2]", "Invalid JSON body: expected an object"),
        (b'"cmId"', "Invalid JSON body: expected an object"),
        ({"createStartDate": "2024-01-01"}, "cmId is required and must be > 0"),
        ({"cmId": 0, **WIDE}, "cmId is required and must be > 0"),
        ({"cmId": -1000298, **WIDE}, "cmId is required and must be > 0"),
        ({"cmId": "abc", **WIDE}, "cmId is required and must be > 0"),
        ({"cmId": True, **WIDE}, "cmId is required and must be > 0"),
        ({"cmId": None, **WIDE}, "cmId is required and must be > 0"),
        ({"cmId": 5, **WIDE}, "cmId 5 is not this account"),
        ({"cmId": "1000299", **WIDE}, "cmId 1000299 is not this account"),
        ({"cmId": CM_ID}, "At least one filter is required besides cmId"),
        (
            {"cmId": CM_ID, "limit": "10", "offset": "0", "sortParam": "x", "viewId": "2", "name": "", "orderIds": ""},
            "At least one filter is required besides cmId",
        ),
        ({"cmId": CM_ID, "loyaltyTier": "gold", "cmid": 5}, "At least one filter is required besides cmId"),
        ({"cmId": CM_ID, "createStartDate": "15/03/2024"}, "createStartDate '15/03/2024' is not a valid date"),
        ({"cmId": CM_ID, "createStartDate": "2024-02-30"}, "createStartDate '2024-02-30' is not a valid date"),
        ({"cmId": CM_ID, **WIDE, "createEndDate": "2024-01-01T10:00:00"}, "createEndDate '2024-01-01T10:00:00'"),
        ({"cmId": CM_ID, "createStartDate": 1715149492000}, "createStartDate 1715149492000 is not a valid date"),
        ({"cmId": CM_ID, **WIDE, "limit": "-1"}, "limit must be a positive integer"),
        ({"cmId": CM_ID, **WIDE, "limit": "abc"}, "limit must be a positive integer"),
        ({"cmId": CM_ID, **WIDE, "limit": 0}, "limit must be a positive integer"),
        ({"cmId": CM_ID, **WIDE, "offset": -3}, "offset must be a non-negative integer"),
        ({"cmId": CM_ID, **WIDE, "offset": "ten"}, "offset must be a non-negative integer"),
        ({"cmId": CM_ID, "customerIds": "12,abc"}, "customerIds must be a comma-separated list of integer ids"),
        ({"cmId": CM_ID, "orderIds": ","}, "orderIds must be a comma-separated list of integer ids"),
        ({"cmId": CM_ID, "statusStr": "AP"}, "Filter statusStr is not supported by the emulator"),
    ],
)
def test_invalid_requests_get_a_failed_body_naming_the_problem(emu, body, message):
    _, client = emu
    response = client.send(body)
    assert response.status_code == 200
    payload = response.json()
    assert payload["status"] == "failed"
    assert payload["message"].startswith(message), payload["message"]


def test_vendor_curl_body_with_a_customer_filter_is_accepted(emu):
    """The vendor's own example: every field present, all strings, only customerIds set."""
    emulator, client = emu
    customer = emulator.store.truth()[0]["customerId"]
    body = {
        key: ""
        for key in (
            "name",
            "phone",
            "email",
            "leadIdStr",
            "enquiryIds",
            "createStartDate",
            "createEndDate",
            "orderIds",
            "sortParam",
            "limit",
            "offset",
            "attr1",
        )
    }
    body.update({"cmId": CM_ID, "viewId": "2", "customerIds": str(customer)})
    orders = client.pull(**{k: v for k, v in body.items() if k != "cmId"})
    assert orders and all(order["customerId"] == customer for order in orders)


def test_cm_id_as_numeric_string_is_accepted(emu):
    _, client = emu
    response = client.send({"cmId": str(CM_ID), **WIDE, "limit": "3"})
    assert len(response.json()["order_details"]) == 3


def test_post_and_get_with_body_give_the_same_answer(emu):
    _, client = emu
    body = {"cmId": CM_ID, **WIDE, "limit": "7", "offset": "3"}
    post = client.send(body, method="POST")
    get = client.send(body, method="GET")
    assert post.status_code == get.status_code == 200
    assert post.content == get.content
    assert len(post.json()["order_details"]) == 7
    bad_post, bad_get = client.send({"cmId": 5, **WIDE}, "POST"), client.send({"cmId": 5, **WIDE}, "GET")
    assert bad_post.content == bad_get.content


def test_other_methods_and_paths(emu):
    emulator, client = emu
    put = client.send({"cmId": CM_ID, **WIDE}, method="PUT")
    assert put.status_code == 405 and put.headers["allow"] == "GET, POST"
    missing = client.http.post("/ms/customer-search/order-search/api/v1/pull", json={"cmId": CM_ID}, auth=client.auth)
    assert missing.status_code == 404 and missing.json()["status"] == "failed"
    # the connection survived both: keep-alive requests still work
    assert client.pull(**WIDE, limit=1)


def test_keep_alive_reuses_one_connection(emu):
    emulator, client = emu
    ports = set()
    for _ in range(5):
        response = client.send({"cmId": CM_ID, **WIDE, "limit": 2}, headers={})
        assert "content-length" in response.headers
        network_stream = response.extensions["network_stream"]
        ports.add(network_stream.get_extra_info("client_addr")[1])
    assert len(ports) == 1


def test_success_body_is_exactly_the_documented_shape(emu):
    _, client = emu
    response = client.send({"cmId": CM_ID, "createStartDate": "1990-01-01", "createEndDate": "1990-01-02"})
    assert response.content == b'{"success":"true","order_details":[]}'
    assert orjson.loads(response.content) == {"success": "true", "order_details": []}


def test_stats_count_pull_requests_and_orders_served(emu):
    emulator, client = emu
    emulator.reset_stats()
    client.pull(**WIDE, limit=10)
    client.pull(**WIDE, limit=5, offset=10)
    client.send({"cmId": 5, **WIDE})
    client.http.get("/_emulator/stats")
    stats = emulator.stats()
    assert stats["pull_requests"] == 3
    assert stats["requests"] == 3
    assert stats["control_requests"] == 1
    assert stats["orders_served"] == 15
    assert stats["failed_bodies"] == 1


def test_leaving_the_block_stops_the_server_and_frees_the_port():
    emulator = Emulator(EmulatorConfig(orders=5))
    with emulator.serve(port=free_port()) as running:  # served again below: a port no other process takes meanwhile
        url = running.url
        assert emulator.url == url and url.startswith("http://127.0.0.1:")
        assert httpx.post(url + emulator.endpoint_path, json={}, timeout=2).json() == FAILED_AUTH
    with pytest.raises(httpx.TransportError):
        httpx.post(url + emulator.endpoint_path, json={}, timeout=1)
    with pytest.raises(RuntimeError):
        _ = emulator.url
    running = emulator.serve(port=running.port)  # same port again, without `with`
    try:
        assert running.url == url
        assert httpx.post(url + emulator.endpoint_path, json={}, timeout=2).json() == FAILED_AUTH
    finally:
        running.stop()
