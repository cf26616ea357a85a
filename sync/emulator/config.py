"""Settings of the Kapture emulator.

Everything the real API leaves undocumented (failure status, end-date inclusivity, page size)
is a setting here rather than a constant, so tests can exercise either behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from zoneinfo import ZoneInfo

DATE_FORMATS: Final = ("both", "date", "datetime")
METHODS: Final = ("GET", "POST")


@dataclass
class EmulatorConfig:
    """What the emulated account contains and how it answers."""

    orders: int = 1000
    days: int = 30
    seed: int = 1
    username: str = "demo"
    password: str = "demo"
    cm_id: int = 1000298
    # The zone date filters are read in; "UTC" (or any other zone than the client's setting)
    # plays an account whose API reads dates in another zone than the one its users see.
    timezone: str = "Asia/Kolkata"
    # Date filters accepted: "both", or only "date" (YYYY-MM-DD) or "datetime" (YYYY-MM-DD HH:MM:SS);
    # the other is refused with a failed body.
    date_formats: str = "both"
    # HTTP methods the endpoint answers; the other gets 405 with a failed body.
    methods: tuple[str, ...] = METHODS
    # HTTP status that accompanies {"status": "failed"} bodies (auth and validation failures).
    auth_failure_status: int = 200
    default_limit: int = 100
    # True: createEndDate includes the whole day/second it names; False: the instant is excluded.
    end_inclusive: bool = True
    new_orders_per_minute: float = 0.0
    edits_per_minute: float = 0.0
    # Share of live edits that hit orders created more than 7 days ago.
    old_edit_fraction: float = 0.1
    # Share of generated orders that are malformed (see generate.MALFORMED_KINDS).
    malformed_rate: float = 0.0
    # Fixes "now" (epoch ms) for generation; None uses the real clock.
    now_ms: int | None = None

    def __post_init__(self) -> None:
        """Reject settings that would make the emulator behave nonsensically."""
        if self.orders < 0:
            raise ValueError("orders must be >= 0")
        if self.days <= 0:
            raise ValueError("days must be > 0")
        if self.cm_id <= 0:
            raise ValueError("cm_id must be > 0")
        if self.default_limit <= 0:
            raise ValueError("default_limit must be > 0")
        if not 100 <= self.auth_failure_status <= 599:
            raise ValueError("auth_failure_status must be an HTTP status (100-599)")
        if self.date_formats not in DATE_FORMATS:
            raise ValueError(f"date_formats must be one of {', '.join(DATE_FORMATS)}")
        self.methods = tuple(m.upper() for m in self.methods)
        if not self.methods or not set(self.methods) <= set(METHODS):
            raise ValueError("methods must be GET, POST or both")
        if self.new_orders_per_minute < 0 or self.edits_per_minute < 0:
            raise ValueError("live rates must be >= 0")
        for name in ("old_edit_fraction", "malformed_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        try:
            ZoneInfo(self.timezone)
        except Exception as exc:  # ZoneInfoNotFoundError, ValueError for odd keys
            raise ValueError(f"unknown timezone {self.timezone!r}") from exc
