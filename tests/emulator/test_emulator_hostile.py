"""Hostile input never crashes the emulator: it answers or closes, and keeps serving."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.emulator import Emulator, EmulatorConfig

CM_ID = 1000298
GOOD = {"cmId": CM_ID, "createStartDate": "2000-01-01", "limit": "3"}
FUZZ = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class Target:
    """The server under attack plus one keep-alive client that checks it still serves."""

    def __init__(self, emulator: Emulator, host: str, port: int) -> None:
        self.emulator, self.host, self.port = emulator, host, port
        self.client = httpx.Client(base_url=f"http://{host}:{port}", auth=("demo", "demo"), timeout=5)

    def still_serves(self) -> None:
        response = self.client.post(Emulator.endpoint_path, json=GOOD)
        assert response.status_code == 200 and len(response.json()["order_details"]) == 3


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    emulator = Emulator(EmulatorConfig(orders=50, days=5))
    with emulator.serve() as running:
        checker = Target(emulator, running.host, running.port)
        yield checker
        checker.client.close()


def raw_exchange(host: str, port: int, payload: bytes) -> bytes:
    """Send bytes, half-close, read whatever comes back until the server closes."""
    with socket.create_connection((host, port), timeout=5) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return b""  # the server may already have closed on us: acceptable
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return received


@FUZZ
@given(payload=st.binary(max_size=3000))
def test_random_bytes(target, payload):
    answer = raw_exchange(target.host, target.port, payload)
    assert answer == b"" or answer.startswith(b"HTTP/")
    target.still_serves()


METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "BREW", "get", "P\x00ST", ""])
PATHS = st.one_of(
    st.sampled_from(
        [
            Emulator.endpoint_path,
            "/_emulator/truth",
            "/_emulator/faults",
            "/_emulator/orders",
            "/",
            "*",
            Emulator.endpoint_path + "?x=1",
            "//" + "a" * 5000,
            "http://evil/x",
        ]
    ),
    st.text(max_size=50).map(lambda t: "/" + t),
)
HEADER_VALUES = st.one_of(
    st.integers(-(10**15), 10**15).map(str),
    st.text(max_size=30),
    st.sampled_from(["Basic ZGVtbzpkZW1v", "Basic", "chunked", "100-continue", "close", "", "\x00"]),
)
HEADER_NAMES = st.sampled_from(
    ["Content-Length", "Authorization", "Transfer-Encoding", "Expect", "Connection", "Content-Type", "X-Junk"]
)


@FUZZ
@given(
    method=METHODS,
    path=PATHS,
    headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6),
    body=st.binary(max_size=2000),
    version=st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/x", ""]),
)
def test_random_requests(target, method, path, headers, body, version):
    head = f"{method} {path} {version}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
    answer = raw_exchange(target.host, target.port, head.encode("utf-8", "surrogatepass") + body)
    assert answer == b"" or answer.startswith(b"HTTP/")
    target.still_serves()


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["", "2024-05-08", "2024-05-08 10:00:00", "1,2,3", "-1", "9" * 40]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
KEYS = st.sampled_from(
    [
        "cmId",
        "createStartDate",
        "createEndDate",
        "customerIds",
        "orderIds",
        "limit",
        "offset",
        "sortParam",
        "viewId",
        "name",
        "x",
    ]
)


@FUZZ
@given(
    fields=st.dictionaries(KEYS, JSON_VALUES, max_size=6),
    keep_cm_id=st.booleans(),
    method=st.sampled_from(["GET", "POST"]),
)
def test_random_json_fields_get_a_success_or_a_failed_body(target, fields, keep_cm_id, method):
    body = {"cmId": CM_ID, **fields} if keep_cm_id else fields
    response = target.client.request(method, Emulator.endpoint_path, content=orjson.dumps(body))
    assert response.status_code == 200
    payload = response.json()
    if payload.get("success") == "true":
        assert isinstance(payload["order_details"], list)
    else:
        assert payload["status"] == "failed" and isinstance(payload["message"], str) and payload["message"]
        assert payload["message"] != "Emulator error"


def test_huge_or_negative_content_length_is_refused_and_the_server_keeps_serving(target):
    for value in ("99999999999", "-5", "12abc", "1e3"):
        request = f"POST {Emulator.endpoint_path} HTTP/1.1\r\nHost: x\r\nContent-Length: {value}\r\n\r\n{{}}"
        answer = raw_exchange(target.host, target.port, request.encode())
        status = int(answer.split(b" ", 2)[1])
        assert status in (400, 413), answer[:100]
    target.still_serves()


def test_a_stalled_client_does_not_block_others(target):
    with socket.create_connection((target.host, target.port)) as stalled:
        stalled.sendall(f"POST {Emulator.endpoint_path} HTTP/1.1\r\nContent-Length: 100\r\n\r\n{{".encode())
        target.still_serves()
