"""The `/_emulator/` control surface: ground truth, counters, request log, orders, edits and faults.

Lets a demo or a test in another process (or language) drive the emulator the way the Python
API does. The server answers it only on loopback; this module knows nothing about HTTP sockets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from sync.emulator.faults import FAULT_KINDS, Faults
from sync.emulator.store import OrderStore

PREFIX: Final = "/_emulator/"
ROUTES: Final = {
    "truth": ("GET",),
    "stats": ("GET", "DELETE"),
    "orders": ("POST",),
    "edits": ("POST",),
    "faults": ("GET", "PUT", "DELETE"),
    "requests": ("GET",),
}
MAX_BATCH: Final = 100_000

RequestLog = Callable[[int], dict[str, Any]]


class ControlError(Exception):
    """A control request that cannot be honoured; carries the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ControlError(400, "Invalid JSON body") from None
    if not isinstance(data, dict):
        raise ControlError(400, "Invalid JSON body: expected an object")
    return data


def _int(data: dict[str, Any], name: str, default: int) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BATCH:
        raise ControlError(400, f"{name} must be an integer between 0 and {MAX_BATCH}")
    return value


class ControlSurface:
    """Routes a control request to the store, the faults or the counters; returns (status, JSON)."""

    def __init__(
        self,
        store: OrderStore,
        faults: Faults,
        stats: Callable[[], dict[str, Any]],
        reset_stats: Callable[[], None],
    ) -> None:
        self._store = store
        self._faults = faults
        self._stats = stats
        self._reset_stats = reset_stats
        self._request_log: RequestLog | None = None

    def attach_request_log(self, request_log: RequestLog) -> None:
        """Serve `GET /_emulator/requests` from this log (the server's; it owns the recording)."""
        self._request_log = request_log

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """Answer one control request; never raises for bad input (400/404/405 instead)."""
        name = path[len(PREFIX) :].strip("/") if path.startswith(PREFIX) else ""
        if name not in ROUTES:
            return 404, {"message": f"Unknown control endpoint {path[:100]}", "status": "failed"}
        if method not in ROUTES[name]:
            allowed = ", ".join(ROUTES[name])
            return 405, {"message": f"{method} not allowed on {path}; use {allowed}", "status": "failed"}
        try:
            return 200, getattr(self, f"_{method.lower()}_{name}")(_object(body))
        except ControlError as exc:
            return exc.status, {"message": exc.message, "status": "failed"}
        except (ValueError, KeyError) as exc:
            message = exc.args[0] if exc.args else str(exc)
            return 400, {"message": str(message), "status": "failed"}

    def _get_truth(self, _: dict[str, Any]) -> list[dict[str, Any]]:
        return self._store.truth()

    def _get_stats(self, _: dict[str, Any]) -> dict[str, Any]:
        return self._stats()

    def _delete_stats(self, _: dict[str, Any]) -> dict[str, Any]:
        self._reset_stats()
        return self._stats()

    def _get_requests(self, data: dict[str, Any]) -> dict[str, Any]:
        since = data.get("since", 0)
        if isinstance(since, bool) or not isinstance(since, int) or since < 0:
            raise ControlError(400, "since must be an integer >= 0")
        if self._request_log is None:
            return {"requests": [], "last_seq": 0, "capacity": 0}
        return self._request_log(since)

    def _post_orders(self, data: dict[str, Any]) -> dict[str, Any]:
        kind = data.get("malformed")
        if kind is not None:
            if not isinstance(kind, str):
                raise ControlError(400, "malformed must be a string")
            return {"created": [self._store.add_malformed(kind)]}
        return {"created": self._store.create(_int(data, "count", 1))}

    def _post_edits(self, data: dict[str, Any]) -> dict[str, Any]:
        keep_stamp = data.get("keep_stamp", False)
        if not isinstance(keep_stamp, bool):
            raise ControlError(400, "keep_stamp must be true or false")
        ids = data.get("ids")
        if ids is not None:
            if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
                raise ControlError(400, "ids must be a list of integer order ids")
            return {"edited": self._store.edit(ids=ids, keep_stamp=keep_stamp)}
        old = data.get("old", False)
        if not isinstance(old, bool):
            raise ControlError(400, "old must be true or false")
        return {"edited": self._store.edit(n=_int(data, "count", 1), old=old, keep_stamp=keep_stamp)}

    def _get_faults(self, _: dict[str, Any]) -> dict[str, Any]:
        return self._faults.settings()

    def _put_faults(self, data: dict[str, Any]) -> dict[str, Any]:
        pushes = data.pop("push", [])
        shape = 'push must be a list of {"kind": one of ' + ", ".join(FAULT_KINDS) + ', "count": n}'
        if not isinstance(pushes, list):
            raise ControlError(400, shape)
        queued = []
        for push in pushes:
            if not isinstance(push, dict) or push.get("kind") not in FAULT_KINDS:
                raise ControlError(400, shape)
            queued.append((push["kind"], _int(push, "count", 1)))
        self._faults.update(data)  # validates everything before changing anything
        for kind, count in queued:
            self._faults.push(kind, count)
        return self._faults.settings()

    def _delete_faults(self, _: dict[str, Any]) -> dict[str, Any]:
        self._faults.clear()
        return self._faults.settings()
