"""Fixtures for the emulator's own tests: a real server on 127.0.0.1 and a small pull client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest

from sync.emulator import Emulator, EmulatorConfig, RunningEmulator

CM_ID = 1000298


def local_ms(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    ms: int = 0,
    zone: str = "Asia/Kolkata",
) -> int:
    """Epoch ms of a wall-clock time in `zone`."""
    moment = datetime(year, month, day, hour, minute, second, ms * 1000, tzinfo=ZoneInfo(zone))
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


class PullClient:
    """What a user's script does: POST (or GET) a JSON body with Basic auth to the endpoint."""

    def __init__(self, base_url: str, username: str = "demo", password: str = "demo", timeout: float = 5.0) -> None:
        self.base_url = base_url
        self.auth = (username, password)
        self.http = httpx.Client(base_url=base_url, timeout=timeout)

    def send(
        self,
        body: dict[str, Any] | bytes,
        method: str = "POST",
        auth: tuple[str, str] | None | str = "default",
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        extra = {"Content-Type": "application/json", **(headers or {})}
        kwargs: dict[str, Any] = {"content": content, "headers": extra}
        if auth == "default":
            kwargs["auth"] = self.auth
        elif auth is not None:
            kwargs["auth"] = auth
        if timeout is not None:
            kwargs["timeout"] = timeout
        return self.http.request(method, Emulator.endpoint_path, **kwargs)

    def pull(self, **fields: Any) -> list[dict[str, Any]]:
        """order_details of a successful pull for cmId plus `fields`; fails the test otherwise."""
        response = self.send({"cmId": CM_ID, **fields})
        assert response.status_code == 200, response.text
        payload = response.json()
        assert payload.get("success") == "true", payload
        return payload["order_details"]

    def pull_ids(self, **fields: Any) -> list[int]:
        return [order["id"] for order in self.pull(**fields)]

    def close(self) -> None:
        self.http.close()


Serve = Callable[..., tuple[Emulator, PullClient]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start emulators on 127.0.0.1:0; every one started is stopped after the test."""
    running: list[RunningEmulator] = []
    clients: list[PullClient] = []

    def _serve(config: EmulatorConfig | None = None, **client_kwargs: Any) -> tuple[Emulator, PullClient]:
        emulator = Emulator(config or EmulatorConfig(orders=400, days=20, seed=7))
        running.append(emulator.serve(host="127.0.0.1", port=0))
        clients.append(PullClient(emulator.url, **client_kwargs))
        return emulator, clients[-1]

    yield _serve
    for client in clients:
        client.close()
    for server in running:
        server.stop()


@pytest.fixture
def emu(serve: Serve) -> tuple[Emulator, PullClient]:
    """A default emulator (400 orders over 20 days, seed 7) and a client for it."""
    return serve()
