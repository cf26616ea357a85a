"""Structured logs on stderr: readable in a terminal, JSON lines everywhere else.

Everything goes through one handler on the standard `logging` root: structlog's own events and
whatever other libraries (APScheduler, httpx, SQLAlchemy, Alembic, ...) log through `logging`,
rendered by structlog's `ProcessorFormatter`, and Python's `warnings` through `logging.captureWarnings`.
So a library's warning is a JSON line like ours, and
every line carries the context bound with `structlog.contextvars` (the daemon binds the account,
`sync.runs.execute` the run id), whichever thread logs it.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

_HANDLER_NAME = "kapture-sync"


def configure_logging(debug: bool = False, stream: TextIO | None = None, quiet: bool = False) -> None:
    """`quiet` keeps only warnings and errors, for commands whose own output tells the story."""
    out = stream or sys.stderr
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    tty = out.isatty()
    renderer: structlog.typing.Processor
    renderer = structlog.dev.ConsoleRenderer(colors=True) if tty else structlog.processors.JSONRenderer()
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if not tty else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Our events are filtered by structlog at `level`; other libraries speak from WARNING up
    # (Alembic's and APScheduler's INFO chatter on every run would drown ours), all of it with --debug.
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("sync").setLevel(logging.DEBUG)
    # httpx logs every request URL at INFO; our own events say what matters, and never a header.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # `warnings.warn` (pydantic, SQLAlchemy, a deprecation in any library) goes to the `py.warnings`
    # logger instead of printing plain text: a JSON line with the account and run id like the rest.
    logging.captureWarnings(True)
