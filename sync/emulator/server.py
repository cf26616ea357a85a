"""The HTTP side of the emulator: keep-alive server, Basic auth, fault delivery, routing.

Built on the standard library's ThreadingHTTPServer (one daemon thread per connection,
HTTP/1.1 keep-alive, Content-Length always sent) so it needs no extra dependency. Every request
path is wrapped so hostile input gets an answer or a closed connection, never a dead server.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import ipaddress
import re
import socket
import sys
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from sync.emulator.config import EmulatorConfig
from sync.emulator.control import PREFIX, ControlSurface
from sync.emulator.faults import Faults
from sync.emulator.request import RequestError, parse_pull_request
from sync.emulator.stats import ServerStats
from sync.emulator.store import OrderStore, render_page

ENDPOINT_PATH: Final = "/ms/customer-search/order-search/api/v1/pull-internal"
MAX_BODY_BYTES: Final = 1 << 20
INVALID_AUTH: Final = {"message": "Invalid Auth Key", "status": "failed"}
FAILED_BODY: Final = {"message": "Something went wrong. Please try again later.", "status": "failed"}
REFUSED_BODY: Final = {"message": "Invalid request: filter not supported", "status": "failed"}
_HTML_PAGE: Final = b"<!DOCTYPE html><html><head><title>Maintenance</title></head><body>Back soon</body></html>"
_CONTENT_LENGTH_RE: Final = re.compile(r"\d{1,12}", re.ASCII)
_GATEWAY_PAGE: Final = "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center></body></html>\n"
_STATUS_TEXT: Final = {"500": "500 Internal Server Error", "502": "502 Bad Gateway", "503": "503 Service Unavailable"}


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


class EmulatorServer(ThreadingHTTPServer):
    """The listening server; owns the parts every request thread shares."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        config: EmulatorConfig,
        store: OrderStore,
        faults: Faults,
        stats: ServerStats,
        control: ControlSurface,
        verbose: bool = False,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.config = config
        self.store = store
        self.faults = faults
        self.stats = stats
        self.control = control
        self.verbose = verbose
        self.credentials = f"{config.username}:{config.password}".encode()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        control.attach_request_log(stats.pull_log)  # GET /_emulator/requests reads this server's log
        super().__init__(address, PullHandler)

    def track(self, connection: socket.socket, open_: bool) -> None:
        """Remember open client sockets so stop() can close keep-alive connections too."""
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut down every client connection still open (idle keep-alive ones included)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection broke mid-request: drop it quietly, keep serving the others."""
        if self.verbose:
            super().handle_error(request, client_address)


class PullHandler(BaseHTTPRequestHandler):
    """One connection; answers the pull endpoint, the control surface, and 404 otherwise."""

    protocol_version = "HTTP/1.1"
    # The stdlib assumes HTTP/0.9 until a request line parses, and answers garbage with a bare
    # HTML body and no status line; assuming 1.0 makes every error a proper HTTP response.
    default_request_version = "HTTP/1.0"
    server_version = "KaptureEmulator/1.0"
    sys_version = ""
    timeout = 60  # an idle or stalled client cannot hold a thread forever
    disable_nagle_algorithm = True  # headers and body are two writes; don't let Nagle delay them
    server: EmulatorServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    # -- plumbing --

    def _dispatch(self) -> None:
        try:
            self._route()
        except OSError:  # client went away or timed out mid-request
            self.close_connection = True
        except Exception:  # a bug must cost one request, not the server
            self.close_connection = True
            with contextlib.suppress(Exception):
                self._send_json(500, {"message": "Emulator error", "status": "failed"})

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, orjson.dumps(payload), "application/json", headers)

    def _refuse(self, status: int, message: str) -> None:
        """Answer and close: used when the body cannot be read, so the stream is out of step."""
        self.close_connection = True
        self._send_json(status, {"message": message, "status": "failed"}, {"Connection": "close"})

    def _read_body(self) -> bytes | None:
        """The request body by Content-Length (GET too); None when the request was refused."""
        if self.headers.get("Transfer-Encoding"):
            self._refuse(411, "Send the body with Content-Length (chunked bodies are not supported)")
            return None
        values = self.headers.get_all("Content-Length") or []
        if not values:
            return b""
        if len(set(values)) != 1 or not _CONTENT_LENGTH_RE.fullmatch(values[0].strip()):
            self._refuse(400, "Invalid Content-Length")
            return None
        length = int(values[0].strip())
        if length > MAX_BODY_BYTES:
            self._refuse(413, f"Body larger than {MAX_BODY_BYTES} bytes")
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            return None
        return body

    def _route(self) -> None:
        path = urlsplit(self.path).path
        is_control = path == PREFIX.rstrip("/") or path.startswith(PREFIX)
        self.server.stats.add("control_requests" if is_control else "requests")
        if not is_control:
            self.server.stats.method(self.command)
        body = self._read_body()
        if body is None:
            return
        if is_control and _is_loopback(self.client_address[0]):
            status, payload = self.server.control.handle(self.command, path, body)
            self._send_json(status, payload)
        elif path == ENDPOINT_PATH and self.command in self.server.config.methods:
            self._pull(body)
        elif path == ENDPOINT_PATH:
            allowed = " or ".join(self.server.config.methods)
            self._send_json(
                405,
                {"message": f"{self.command} not allowed; use {allowed}", "status": "failed"},
                {"Allow": ", ".join(self.server.config.methods)},
            )
        else:
            self._send_json(404, {"message": "Not found", "status": "failed"})

    # -- the pull endpoint --

    def _authorized(self) -> bool:
        scheme, _, token = (self.headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(decoded, self.server.credentials)

    def _answer(self, body: bytes) -> tuple[int, bytes, int]:
        """What the API says to this request: (HTTP status, body, orders in it)."""
        server = self.server
        failure_status = server.config.auth_failure_status
        if not self._authorized():
            server.stats.add("failed_bodies")
            return failure_status, orjson.dumps(INVALID_AUTH), 0
        try:
            query = parse_pull_request(body, server.config)
        except RequestError as exc:
            server.stats.add("failed_bodies")
            return failure_status, orjson.dumps({"message": exc.message, "status": "failed"}), 0
        faults = server.faults
        most = faults.limit_max
        if most is not None and query.limit > most:
            server.stats.add("failed_bodies")
            return failure_status, orjson.dumps({"message": f"limit must be at most {most}", "status": "failed"}), 0
        cap = faults.limit_cap
        blobs = server.store.query(
            start_ms=query.start_ms,
            end_ms=query.end_ms,
            customer_ids=query.customer_ids,
            order_ids=query.order_ids,
            newest_first=faults.newest_first,
            offset=0 if faults.ignore_offset else query.offset,
            limit=query.limit if cap is None else min(query.limit, cap),
            by_modified=faults.order_by == "lastModificationTime",
        )
        return 200, render_page(blobs), len(blobs)

    def _pull(self, body: bytes) -> None:
        self.server.stats.begin_pull()
        try:
            self._pull_counted(body)
        finally:
            self.server.stats.end_pull()

    def _pull_counted(self, body: bytes) -> None:
        server = self.server
        faults = server.faults
        server.stats.add("pull_requests")
        fault = faults.take()
        server.stats.log_pull(self.command, body, fault)
        latency = faults.latency_ms
        if latency:
            time.sleep(latency / 1000)
        if fault == "disconnect":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault == "timeout":
            time.sleep(faults.slow_seconds)
        if fault == "429":
            self._send_json(
                429,
                {"message": "Too many requests", "status": "failed"},
                {"Retry-After": str(faults.retry_after_seconds)},
            )
            return
        if fault == "429_date":
            when = formatdate(time.time() + faults.retry_after_seconds, usegmt=True)
            self._send_json(429, {"message": "Too many requests", "status": "failed"}, {"Retry-After": when})
            return
        if fault == "html":
            self._send(200, _HTML_PAGE, "text/html")
            return
        if fault == "list_body":
            self._send(200, b'[{"message": "unexpected"}]', "application/json")
            return
        if fault == "refused_body":
            self._send_json(200, REFUSED_BODY)
            return
        if fault == "500":
            self._send_json(500, {"message": "Internal Server Error", "status": "failed"})
            return
        if fault in ("502", "503"):
            self._send(int(fault), _GATEWAY_PAGE.format(_STATUS_TEXT[fault]).encode(), "text/html")
            return
        if fault == "failed_body":
            server.stats.add("failed_bodies")
            self._send_json(200, FAILED_BODY)
            return
        status, payload, served = self._answer(body)
        if fault == "truncate":
            self.close_connection = True
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault == "bad_json":
            self._send(200, payload[: max(1, len(payload) // 2)], "application/json")
            return
        self._send(status, payload, "application/json")
        server.stats.add("orders_served", served)
