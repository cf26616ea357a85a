"""`kapture-sync emulator`: run the Kapture emulator in the foreground until SIGINT/SIGTERM.

Prints the URL it listens on and the environment lines that point kapture-sync at it, so the
README's first command works without a Kapture account.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from sync.emulator import Emulator, EmulatorConfig
from sync.emulator.config import DATE_FORMATS, METHODS
from sync.emulator.faults import FAULT_KINDS, ORDER_KEYS

_DEFAULTS = EmulatorConfig()


def _parse_fault(text: str) -> tuple[str, float]:
    kind, sep, rate = text.partition("=")
    if not sep or kind not in FAULT_KINDS:
        raise click.BadParameter(f"{text!r}: use KIND=RATE with KIND one of {', '.join(FAULT_KINDS)}")
    try:
        value = float(rate)
    except ValueError:
        raise click.BadParameter(f"{text!r}: RATE must be a number between 0 and 1") from None
    if not 0 <= value <= 1:
        raise click.BadParameter(f"{text!r}: RATE must be between 0 and 1")
    return kind, value


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option(
    "--orders", default=_DEFAULTS.orders, show_default=True, type=click.IntRange(0), help="Orders generated at start."
)
@click.option(
    "--days",
    default=_DEFAULTS.days,
    show_default=True,
    type=click.IntRange(1),
    help="Create dates span the last D days.",
)
@click.option("--seed", default=_DEFAULTS.seed, show_default=True, type=int, help="Same seed, same orders.")
@click.option("--username", default=_DEFAULTS.username, show_default=True)
@click.option("--password", default=_DEFAULTS.password, show_default=True)
@click.option(
    "--cm-id", default=_DEFAULTS.cm_id, show_default=True, type=click.IntRange(1), help="The account id (cmId)."
)
@click.option("--timezone", default=_DEFAULTS.timezone, show_default=True, help="IANA zone date filters are read in.")
@click.option(
    "--new-per-minute", default=0.0, show_default=True, type=click.FloatRange(0), help="New orders per minute."
)
@click.option("--edits-per-minute", default=0.0, show_default=True, type=click.FloatRange(0), help="Edits per minute.")
@click.option(
    "--old-edit-fraction",
    default=_DEFAULTS.old_edit_fraction,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of edits on orders older than 7 days.",
)
@click.option(
    "--malformed-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of generated orders that are malformed.",
)
@click.option("--limit-cap", default=None, type=click.IntRange(1), help="Silently serve at most N orders per page.")
@click.option(
    "--default-limit",
    default=_DEFAULTS.default_limit,
    show_default=True,
    type=click.IntRange(1),
    help="Page size when the request's limit is empty.",
)
@click.option("--newest-first", is_flag=True, help="Order pages newest first (descending).")
@click.option(
    "--order-by",
    type=click.Choice(ORDER_KEYS),
    default="createDate",
    show_default=True,
    help="Field pages are ordered by.",
)
@click.option("--ignore-offset", is_flag=True, help="Serve every page from the first row, whatever offset asks.")
@click.option(
    "--date-formats",
    type=click.Choice(DATE_FORMATS),
    default=_DEFAULTS.date_formats,
    show_default=True,
    help="Date filters accepted; the other format is refused with a failed body.",
)
@click.option(
    "--method",
    "method",
    type=click.Choice(METHODS),
    default=None,
    help="Answer only this HTTP method (default: GET and POST); the other gets 405.",
)
@click.option("--latency-ms", default=0.0, show_default=True, type=click.FloatRange(0), help="Added to every pull.")
@click.option(
    "--slow-seconds",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0),
    help="How long a timeout fault holds the answer.",
)
@click.option("--retry-after", default=1, show_default=True, type=click.IntRange(0), help="Retry-After sent with 429.")
@click.option(
    "--auth-failure-status",
    default=200,
    show_default=True,
    type=click.IntRange(100, 599),
    help="HTTP status sent with failed bodies.",
)
@click.option("--end-exclusive", is_flag=True, help="createEndDate excludes the instant it names.")
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="KIND=RATE",
    help=f"Per-request fault probability; KIND in {', '.join(FAULT_KINDS)}. Repeatable.",
)
@click.option("--verbose", is_flag=True, help="Log every request to stderr.")
def emulator_command(
    host: str,
    port: int,
    orders: int,
    days: int,
    seed: int,
    username: str,
    password: str,
    cm_id: int,
    timezone: str,
    new_per_minute: float,
    edits_per_minute: float,
    old_edit_fraction: float,
    malformed_rate: float,
    limit_cap: int | None,
    default_limit: int,
    newest_first: bool,
    order_by: str,
    ignore_offset: bool,
    date_formats: str,
    method: str | None,
    latency_ms: float,
    slow_seconds: float,
    retry_after: int,
    auth_failure_status: int,
    end_exclusive: bool,
    faults: tuple[str, ...],
    verbose: bool,
) -> None:
    """Serve a local server that behaves like Kapture's Pull Order API."""
    try:
        config = EmulatorConfig(
            orders=orders,
            days=days,
            seed=seed,
            username=username,
            password=password,
            cm_id=cm_id,
            timezone=timezone,
            date_formats=date_formats,
            methods=(method,) if method else METHODS,
            auth_failure_status=auth_failure_status,
            default_limit=default_limit,
            end_inclusive=not end_exclusive,
            new_orders_per_minute=new_per_minute,
            edits_per_minute=edits_per_minute,
            old_edit_fraction=old_edit_fraction,
            malformed_rate=malformed_rate,
        )
        rates = dict(_parse_fault(text) for text in faults)
        emulator = Emulator(config)
        emulator.faults.update(
            {
                "rates": rates,
                "limit_cap": limit_cap,
                "newest_first": newest_first,
                "order_by": order_by,
                "ignore_offset": ignore_offset,
                "latency_ms": latency_ms,
                "slow_seconds": slow_seconds,
                "retry_after_seconds": retry_after,
            }
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        running = emulator.serve(host=host, port=port, verbose=verbose)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        click.echo(f"Kapture emulator listening on {running.url} (cm_id={cm_id}, user={username})")
        click.echo(f"export KAPTURE_BASE_URL={running.url}")
        click.echo(f"export KAPTURE_USERNAME={username}")
        if password == _DEFAULTS.password:
            click.echo(f"export KAPTURE_PASSWORD={password}")
        click.echo(f"export KAPTURE_CM_ID={cm_id}")
        if timezone != _DEFAULTS.timezone:
            click.echo(f"export KAPTURE_TIMEZONE={timezone}")
        if end_exclusive:
            click.echo("export KAPTURE_END_INCLUSIVE=false")
        if date_formats == "datetime":
            click.echo("export KAPTURE_DATE_FORMAT=datetime")
        if method == "GET":
            click.echo("export KAPTURE_HTTP_METHOD=GET")
        while not stop.wait(0.5):
            pass
    finally:
        running.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
