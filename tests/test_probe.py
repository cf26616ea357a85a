"""`kapture-sync check` learns the API: every finding against a real emulator in the mode that shows it,
within the request budget, and "too few orders to tell" where the account cannot show it."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sync.probe import BUDGET, Findings, describe, disagreements, probe
from tests.conftest import settings_for

# mode -> (emulator config, standing faults, client settings, findings expected (topic -> words in its
# line), the settings check must call wrong with their right values)
MODES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, str], dict[str, Any]]] = {
    "the defaults, right": (
        {"orders": 2500},  # more than one page at the default limit (1000) in the range `check` reads
        {},
        {},
        {
            "method": "POST and GET accepted",
            "dates": "'date' and 'datetime' accepted",
            "zone": "read in Asia/Kolkata",
            "end bound": "datetime: inclusive; date: inclusive",
            "order": "oldest first by create date",
            "offset": "honoured",
            "limit": "1000 honoured",
        },
        {},
    ),
    "end exclusive": (
        {"end_inclusive": False},
        {},
        {},
        {"end bound": "datetime: exclusive; date: exclusive"},
        {"end_inclusive": False},
    ),
    "end inclusive, set exclusive": ({}, {}, {"end_inclusive": False}, {}, {"end_inclusive": True}),
    "dates read in UTC": ({"timezone": "UTC"}, {}, {}, {"zone": "read in UTC"}, {"timezone": "UTC"}),
    "dates read in New York": (
        {"timezone": "America/New_York"},
        {},
        {},
        {"zone": "none of Asia/Kolkata, UTC: set KAPTURE_TIMEZONE", "end bound": "date: inclusive"},
        {},
    ),
    "datetime only, exclusive": (
        {"date_formats": "datetime", "end_inclusive": False},
        {},
        {},
        {"dates": "'datetime' accepted, 'date' refused", "end bound": "datetime: exclusive"},
        {"date_format": "datetime", "end_inclusive": False},
    ),
    "date only, UTC, exclusive": (
        {"date_formats": "date", "timezone": "UTC", "end_inclusive": False},
        {},
        {"date_format": "datetime", "window": "6h"},
        {"dates": "'date' accepted, 'datetime' refused", "zone": "read in UTC", "end bound": "date: exclusive"},
        {"date_format": "date", "window": "1d", "timezone": "UTC", "end_inclusive": False},
    ),
    "date only, right": ({"date_formats": "date"}, {}, {}, {"zone": "read in Asia/Kolkata"}, {}),
    "GET only": ({"methods": ("GET",)}, {}, {}, {"method": "GET accepted, POST refused"}, {"http_method": "GET"}),
    "POST only, set GET": (
        {"methods": ("POST",)},
        {},
        {"http_method": "GET"},
        {"method": "POST accepted, GET refused"},
        {"http_method": "POST"},
    ),
    "newest first": ({}, {"newest_first": True}, {}, {"order": "newest first by create date"}, {}),
    "by modification time": (
        {},
        {"order_by": "lastModificationTime"},
        {},
        {"order": "oldest first by modification time"},
        {},
    ),
    "newest modified first": (
        {},
        {"order_by": "lastModificationTime", "newest_first": True},
        {},
        {"order": "newest first by modification time"},
        {},
    ),
    "offset ignored": ({}, {"ignore_offset": True}, {}, {"offset": "ignored", "limit": "cannot tell"}, {}),
    "limit capped": ({}, {"limit_cap": 30}, {}, {"limit": "capped silently at 30"}, {"page_size": 30}),
    "no orders": (
        {"orders": 0},
        {},
        {},
        {"zone": "too few", "end bound": "too few", "order": "too few", "limit": "too few", "offset": "too few"},
        {},
    ),
    "one order": (
        {"orders": 1, "days": 3},
        {},
        {},
        {"zone": "read in Asia/Kolkata", "end bound": "inclusive", "order": "too few", "offset": "too few"},
        {},
    ),
}


def lines_by_topic(findings: Findings) -> dict[str, str]:
    return {f.topic: f.text for f in findings.items}


@pytest.mark.parametrize("mode", list(MODES))
def test_check_finds_what_the_account_does(start_emulator, connect, mode):
    server, faults, client, expected, wrong = MODES[mode]
    emu, serving = start_emulator(**server)
    emu.faults.update(faults)
    settings = settings_for(serving.url, **client)
    findings = probe(connect(settings), settings)
    found = lines_by_topic(findings)
    for topic, words in expected.items():
        assert words in found.get(topic, ""), f"{topic}: {found.get(topic)!r}"
    assert {key: right for key, (_, right) in disagreements(findings, settings).items()} == wrong
    assert findings.requests <= BUDGET and findings.requests == emu.stats()["requests"]
    shown = describe(findings, settings)
    assert len(shown) == len(findings.items) and all(len(line) < 220 for line in shown)
    assert sum("<- KAPTURE_" in line for line in shown) == len(wrong)


def test_a_zone_the_account_does_not_read_dates_in_is_ruled_out(start_emulator, connect):
    _, serving = start_emulator(timezone="America/New_York")
    settings = settings_for(serving.url)
    findings = probe(connect(settings), settings)
    assert findings.ruled_out == {"timezone": "Asia/Kolkata"}
    assert "KAPTURE_TIMEZONE" not in findings.undetermined()


def test_a_server_that_ignores_order_ids_leaves_zone_and_end_unknown(connect):
    """The zone and end questions ask by `orderIds`; answers from a server ignoring it would be guesses."""
    yesterday = int((datetime.now(UTC) - timedelta(days=1)).timestamp()) // 60 * 60_000
    records = [{"id": 10 + i, "createDate": yesterday + i * 1000, "lastModificationTime": yesterday} for i in range(5)]

    class Everything(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.dumps({"success": "true", "order_details": records}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer  # noqa: N815 (http.server's naming)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Everything)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = settings_for(f"http://127.0.0.1:{server.server_address[1]}")
        findings = probe(connect(settings), settings)
    finally:
        server.shutdown()
        server.server_close()
    assert "ignores the orderIds filter" in lines_by_topic(findings)["end bound"]
    assert {"timezone", "end_inclusive"}.isdisjoint(findings.right()) and not findings.ruled_out
    assert findings.undetermined() == ["KAPTURE_TIMEZONE", "KAPTURE_END_INCLUSIVE"]


def test_a_spent_budget_leaves_the_rest_unknown_instead_of_guessed(start_emulator, connect):
    emu, serving = start_emulator(end_inclusive=False)
    settings = settings_for(serving.url)
    findings = probe(connect(settings), settings, budget=5)
    assert emu.stats()["pull_requests"] == 5
    assert "budget of 5 requests" in lines_by_topic(findings)["budget"]
    assert "end_inclusive" not in disagreements(findings, settings)


def test_a_refusal_that_no_format_or_method_avoids_is_the_answer(start_emulator, connect):
    from sync.errors import KaptureRejected

    _, serving = start_emulator()
    settings = settings_for(serving.url, cm_id=5)
    with pytest.raises(KaptureRejected, match="cmId 5"):
        probe(connect(settings), settings)
