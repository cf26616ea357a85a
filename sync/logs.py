"""Structured logs on stderr: readable in a terminal, JSON lines everywhere else."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def configure_logging(debug: bool = False, stream: TextIO | None = None, quiet: bool = False) -> None:
    """`quiet` keeps only warnings and errors, for commands whose own output tells the story."""
    out = stream or sys.stderr
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    renderer: structlog.typing.Processor
    renderer = structlog.dev.ConsoleRenderer(colors=True) if out.isatty() else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info if not out.isatty() else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    # httpx logs every request URL at INFO; our own events say what matters, and never a header.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
