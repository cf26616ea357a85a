"""Logs are JSON lines with the account and run id on every line, other libraries' lines included."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from datetime import date, timedelta

import structlog

from sync.logs import configure_logging
from sync.runs import sync
from tests.conftest import settings_for


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_standard_logging_from_other_libraries_is_a_json_line_with_the_bound_context():
    stream = io.StringIO()
    configure_logging(stream=stream)
    try:
        with structlog.contextvars.bound_contextvars(account="acme", run_id=7):
            logging.getLogger("apscheduler.scheduler").warning("Run time of job %s was missed", "sync:acme")
            structlog.get_logger("sync.test").info("ours", n=1)
        logging.getLogger("alembic").info("chatter below WARNING is dropped")
    finally:
        configure_logging()
    theirs, ours = _lines(stream)
    assert theirs["event"] == "Run time of job sync:acme was missed" and theirs["logger"] == "apscheduler.scheduler"
    assert (theirs["account"], theirs["run_id"], theirs["level"]) == ("acme", 7, "warning")
    assert (ours["event"], ours["account"], ours["run_id"], ours["n"]) == ("ours", "acme", 7, 1)


def test_lines_logged_by_the_prefetch_thread_carry_the_run_id(start_emulator, engine, database_url, connect):
    emu, serving = start_emulator(orders=50, days=3)
    emu.faults.push("503", 1)
    settings = settings_for(serving.url, database_url, start_date=date.today() - timedelta(days=3))
    stream = io.StringIO()
    configure_logging(stream=stream)
    try:
        with structlog.contextvars.bound_contextvars(account="acme"):
            result = sync(engine, connect(settings), settings)
    finally:
        configure_logging()
    lines = _lines(stream)
    [retry] = [line for line in lines if line["event"] == "kapture.retry"]
    assert (retry["account"], retry["run_id"]) == ("acme", result.run_id)
    assert all(line.get("run_id") == result.run_id for line in lines if line["event"].startswith("run."))


def test_a_python_warning_is_one_json_line_with_the_bound_context():
    """`warnings.warn` in a library used to print plain text into the JSON stream (a real process: pytest
    captures warnings itself)."""
    program = (
        "import warnings, structlog\n"
        "from sync.logs import configure_logging\n"
        "configure_logging()\n"
        "with structlog.contextvars.bound_contextvars(account='acme', run_id=7):\n"
        "    warnings.warn('this call is deprecated', DeprecationWarning, stacklevel=1)\n"
        "    structlog.get_logger('sync.test').info('ours')\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # a plain-text line fails here
    warning, ours = lines
    assert "DeprecationWarning: this call is deprecated" in warning["event"], warning
    assert (warning["logger"], warning["level"], warning["account"], warning["run_id"]) == (
        "py.warnings",
        "warning",
        "acme",
        7,
    )
    assert ours["event"] == "ours" and ours["run_id"] == 7
