"""The `kapture-sync` command line: parses flags, builds settings, engine and client, calls the core.

Every failure the user can act on ends here as one line on stderr and a non-zero exit status
(see sync/errors.py for the codes); `--debug` adds the traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import click
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from tqdm import tqdm

from sync import __version__
from sync.client import KaptureClient, make_client, make_http_client
from sync.db import database_problem, ensure_schema, make_engine, redact, upgrade
from sync.errors import DatabaseUnavailable, SettingsError, SyncError
from sync.logs import configure_logging
from sync.memory import tune_malloc
from sync.runs import RunResult, backfill, reconcile, sync
from sync.schedule import Task
from sync.settings import DEFAULT_CONFIG_PATH, DatabaseSettings, Settings, config_path, load_settings, today_in
from sync.stop import Stop, Stopped, Terminated

F = TypeVar("F", bound=Callable[..., Any])


def _settings_options(func: F) -> F:
    """Flags that override any setting; shared by every command that talks to Kapture or the database."""
    options = [
        click.option("--config", "config", type=click.Path(dir_okay=False), help="TOML config file."),
        click.option("--database-url", help="SQLAlchemy URL of the target (KAPTURE_SYNC_DATABASE_URL)."),
        click.option("--base-url", help="Kapture account URL (KAPTURE_BASE_URL)."),
        click.option("--cm-id", type=int, help="Kapture account id (KAPTURE_CM_ID)."),
        click.option("--account", help="With [[accounts]] in the config: the account, by name or cm_id."),
        click.option(
            "--set",
            "assignments",
            multiple=True,
            metavar="KEY=VALUE",
            help="Any setting by its config-file key, e.g. --set page_size=500. Repeatable.",
        ),
        click.option("--debug", is_flag=True, help="Debug logs, and a traceback on failure."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _overrides(params: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in params.pop("assignments", ()) or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"bad setting: --set expects KEY=VALUE, got {item!r}")
        values[key.strip().replace("-", "_")] = value
    for key in ("database_url", "base_url", "cm_id", "account"):
        if params.get(key) is not None:
            values[key] = params[key]
    return values


def _load(kind: type[DatabaseSettings], params: dict[str, Any]) -> Any:
    configure_logging(debug=bool(params.get("debug")))
    return load_settings(_overrides(params), params.get("config"), kind=kind)


def _load_scoped(params: dict[str, Any]) -> tuple[DatabaseSettings, int | None]:
    """Settings for a command that reads one database (`status`, `export`) and the account it is limited to:
    `--account NAME` (resolved by the accounts loader: that account's cm_id and zone), `--cm-id`, or None (all)."""
    if params.get("account") is None:
        return _load(DatabaseSettings, params), params.get("cm_id")
    settings: Settings = _load(Settings, params)
    return settings, settings.cm_id


@contextmanager
def _database(url: str) -> Iterator[Engine]:
    """An engine for one command; any database failure inside becomes one line naming the database."""
    engine = make_engine(url)
    try:
        yield engine
    except DBAPIError as exc:
        raise DatabaseUnavailable(database_problem(engine, exc)) from None
    finally:
        engine.dispose()


@contextmanager
def _kapture(settings: Settings) -> Iterator[tuple[Engine, KaptureClient]]:
    with _database(settings.database_url) as engine, make_http_client(settings) as http:
        yield engine, make_client(settings, http)


@contextmanager
def _stopping() -> Iterator[Stop]:
    """A run's stop, which SIGINT/SIGTERM set while the run lasts; a second signal raises at once.

    The run honours the stop at its next page boundary (sync/stop.py) and is recorded
    `interrupted`. A `KeyboardInterrupt` raised wherever the main thread happens to be can cut
    short any bytecode of SQLAlchemy's pool or the driver (the pool's `_finalize_fairy` has to
    special-case it); one CI run printed a pool traceback after the one line that way.
    """
    stop = Stop()

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():  # the operator does not want to wait for the page boundary
            raise KeyboardInterrupt if signum == signal.SIGINT else Terminated
        stop.set(f"received {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _progress(enabled: bool, label: str) -> Iterator[dict[str, Any]]:
    """tqdm over windows with rate and ETA, shown only when stderr is a terminal."""
    state: dict[str, Any] = {"bar": None, "orders": 0}

    def on_plan(tasks: list[Task]) -> None:
        if enabled:
            state["bar"] = tqdm(total=len(tasks), desc=label, unit="window", file=sys.stderr, dynamic_ncols=True)

    def on_window(task: Task, seen: int) -> None:
        state["orders"] += seen
        if state["bar"] is not None:
            state["bar"].set_postfix(orders=state["orders"], refresh=False)
            state["bar"].update(1)

    try:
        yield {"on_plan": on_plan, "on_window": on_window}
    finally:
        if state["bar"] is not None:
            state["bar"].close()


EARLIEST_DAY = date(1990, 1, 1)
SIGPIPE_STATUS = 128 + signal.SIGPIPE  # 141: `export | head` stopped reading, as a shell reports `cat big | head`


def _check_day(flag: str, day: datetime, settings: Settings) -> None:
    """A create date Kapture could hold: not before 1990 (see transform.py), not after today."""
    if not EARLIEST_DAY <= day.date() <= today_in(settings.zone):
        raise SettingsError(f"bad setting: {flag} {day.date().isoformat()} is outside 1990-01-01 .. today")


def _report(result: RunResult) -> None:
    click.echo(result.summary())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kapture-sync")
def cli() -> None:
    """Keep a SQL database in step with Kapture CRM's Pull Order API."""


@cli.command("backfill")
@click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First create date.")
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), help="Last create date (default: today).")
@click.option("--refetch", is_flag=True, help="Also re-read windows the ledger says are complete.")
@_settings_options
def backfill_command(first: datetime, last: datetime | None, refetch: bool, **params: Any) -> None:
    """Every order created in the range; killed and restarted, it resumes."""
    settings: Settings = _load(Settings, params)
    _check_day("--from", first, settings)
    if last is not None and last.date() < first.date():
        raise SettingsError("bad setting: --to is before --from")
    with (
        _kapture(settings) as (engine, client),
        _stopping() as stop,
        _progress(sys.stderr.isatty(), "backfill") as hooks,
    ):
        _report(
            backfill(engine, client, settings, first.date(), last.date() if last else None, refetch, stop=stop, **hooks)
        )


@cli.command("sync")
@_settings_options
def sync_command(**params: Any) -> None:
    """One incremental run: new orders, and changes within the look-back and due windows."""
    settings: Settings = _load(Settings, params)
    with _kapture(settings) as (engine, client), _stopping() as stop:
        _report(sync(engine, client, settings, stop=stop))


@cli.command("reconcile")
@click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), help="First create date (default: all).")
@_settings_options
def reconcile_command(first: datetime | None, **params: Any) -> None:
    """A full re-scan that reports the changes incremental runs had missed, by age."""
    settings: Settings = _load(Settings, params)
    if first is not None:
        _check_day("--from", first, settings)
    with (
        _kapture(settings) as (engine, client),
        _stopping() as stop,
        _progress(sys.stderr.isatty(), "reconcile") as hooks,
    ):
        result = reconcile(engine, client, settings, first.date() if first else None, stop=stop, **hooks)
    _report(result)
    missed = result.totals.load.inserted + result.totals.load.updated
    ages = ", ".join(f"{label}: {n}" for label, n in sorted(result.totals.changed_by_age.items()))
    click.echo(
        f"reconcile found {missed} change(s) the incremental runs had not stored"
        + (f" ({ages}; oldest order {result.totals.oldest_change_days} days old)" if missed else "")
    )


@cli.command("daemon")
@_settings_options
def daemon_command(**params: Any) -> int:
    """Run sync every interval and reconcile on a cron, for every account, until SIGTERM/SIGINT."""
    from sync.daemon import run_daemon
    from sync.settings import load_accounts

    configure_logging(debug=bool(params.get("debug")))
    if params.get("account"):
        raise SettingsError("bad setting: the daemon syncs every account; --account is for one-shot commands")
    return run_daemon(load_accounts(_overrides(params), params.get("config")))


@cli.command("status")
@click.option("--runs", default=10, show_default=True, help="How many recent runs to list.")
@click.option(
    "--format", "output", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Output."
)
@_settings_options
def status_command(runs: int, output: str, **params: Any) -> None:
    """Watermark, lag, coverage, edit ages and the last runs, for a person (or JSON)."""
    from sync.freshness import freshness, freshness_text
    from sync.report import accounts, status_text
    from sync.state import Account

    settings, cm_id = _load_scoped(params)
    with _database(settings.database_url) as engine:
        ensure_schema(engine)
        with engine.connect() as conn:
            known = accounts(conn)
            if cm_id:
                known = [Account(cm_id)]
            if output == "json":
                figures = [freshness(conn, account) for account in known]
                click.echo(json.dumps({"database": redact(engine.url), "accounts": figures}, default=str, indent=2))
                return
            click.echo(f"database {redact(engine.url)}")
            if not known:
                click.echo("no account has been synced yet: run `kapture-sync backfill` or `kapture-sync sync`")
            for account in known:
                click.echo()
                text = status_text(conn, account, settings.zone, datetime.now(tz=UTC), runs)
                head, _, runs_table = text.partition("\n\n")
                click.echo("\n".join([head, *freshness_text(freshness(conn, account)), "", runs_table]))


@contextmanager
def _whole_file(path: str) -> Iterator[IO[bytes]]:
    """A file written beside `path` and renamed onto it once whole: an export cut short (a signal, a
    database error, a full disk) leaves the previous file as it was, not a truncated one."""
    target = Path(path)
    part = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        out = open(part, "wb")  # noqa: SIM115 (closed by the `with` below, before the rename)
    except OSError as exc:
        raise click.BadParameter(f"cannot write {target}: {exc.strerror}", param_hint="--output") from None
    try:
        with out:
            yield out
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


@cli.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="First create date, in the account's zone.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Last create date (inclusive), account's zone.")
@click.option("--output", type=click.Path(dir_okay=False), help="File to write (default: stdout).")
@_settings_options
def export_command(
    fmt: str, since: datetime | None, until: datetime | None, output: str | None, **params: Any
) -> int | None:
    """Orders (orders_current, without raw) as CSV or Parquet, streamed in chunks.

    A reader that stops early (`kapture-sync export | head`) ends the export quietly with status 141,
    as for any tool killed by SIGPIPE."""
    from sync.export import export, sink_for, stdout

    if not output and sys.stdout is None:  # started with its standard output closed (`>&-`)
        raise click.BadParameter("standard output is closed: give a file to write", param_hint="--output")
    settings, cm_id = _load_scoped(params)
    if fmt == "parquet":
        sink_for("parquet", io.BytesIO())  # fails early, in one line, when pyarrow is missing
    with _database(settings.database_url) as engine:
        ensure_schema(engine)

        def bar(total: int | None) -> Any:
            return tqdm(total=total, desc="export", unit="order", file=sys.stderr, dynamic_ncols=True)

        try:
            with _whole_file(output) if output else contextlib.nullcontext(stdout()) as out:
                written = export(
                    engine,
                    fmt,
                    out,
                    cm_id,
                    since.date() if since else None,
                    until.date() if until else None,
                    progress=bar if sys.stderr.isatty() else None,
                )
                out.flush()
        except BrokenPipeError:
            if output:
                raise
            # The reader went away: what is still buffered goes nowhere, instead of failing at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return SIGPIPE_STATUS
    if output:
        click.echo(f"exported {written} orders to {output}", err=True)
    return None


@contextmanager
def _settings_file_created(path: Path) -> Iterator[None]:
    """An empty config file at `path` while `check --write-config` runs, removed if nothing was written."""
    try:
        path.touch(exist_ok=False)
    except OSError as exc:
        raise SettingsError(f"bad setting: cannot create config file {path}: {exc.strerror}") from None
    try:
        yield
    finally:
        if path.stat().st_size == 0:
            path.unlink()


@cli.command("check")
@click.option("--write-config", is_flag=True, help="Write the settings the account showed into the config file.")
@_settings_options
def check_command(write_config: bool, **params: Any) -> None:
    """Validate settings, reach the database and Kapture, and learn how the API reads its filters."""
    named = config_path(params.get("config"))
    creating = (  # "created if missing", as the default path is
        _settings_file_created(named)
        if write_config and named is not None and not named.exists()
        else contextlib.nullcontext()
    )
    with creating:
        _check(write_config, params)


def _check(write_config: bool, params: dict[str, Any]) -> None:
    from sync.config_edit import toml_value, write_settings
    from sync.probe import BUDGET, describe, disagreements, mismatch_line, probe

    flags = _overrides(dict(params))
    settings: Settings = _load(Settings, params)
    click.echo(f"settings ok: account {settings.cm_id} at {settings.base_url}, zone {settings.timezone}")
    with _kapture(settings) as (engine, client):
        with engine.connect():
            pass
        click.echo(f"database ok: {redact(engine.url)}")
        findings = probe(client, settings)
    click.echo(f"kapture ok: credentials accepted; {findings.requests} of at most {BUDGET} requests to learn the API:")
    for line in describe(findings, settings):
        click.echo(line)
    wrong = disagreements(findings, settings)
    path = config_path(params.get("config")) or DEFAULT_CONFIG_PATH
    if not wrong and not findings.ruled_out:
        unknown = findings.undetermined()
        if unknown:
            click.echo(
                f"no setting contradicted, but not known: {', '.join(unknown)} (see above); "
                "the run guard stops a run that reads nothing where orders exist"
            )
        else:
            click.echo("every setting agrees with what the account does")
        return
    if not write_config or not wrong:
        hint = f"; `kapture-sync check --write-config` writes the right values to {path}" if wrong else ""
        raise SettingsError(f"bad setting: the account contradicts {mismatch_line(wrong, findings.ruled_out)}{hint}")
    write_settings(path, {key: right for key, (_, right) in wrong.items()})
    click.echo(f"wrote {', '.join(f'{key} = {toml_value(right)}' for key, (_, right) in wrong.items())} to {path}")
    still = disagreements(findings, load_settings(flags, path))
    if still:
        raise SettingsError(
            f"bad setting: {mismatch_line(still)} still, from the environment or a flag, which win over {path}"
        )
    if findings.ruled_out:
        raise SettingsError(f"bad setting: the account contradicts {mismatch_line({}, findings.ruled_out)}")


@cli.group("db")
def db_group() -> None:
    """Schema management."""


@db_group.command("upgrade")
@_settings_options
def db_upgrade_command(**params: Any) -> None:
    """Apply migrations up to head."""
    if params.get("account") is not None:
        raise SettingsError("bad setting: --account does not apply to `db upgrade`: every account shares one database")
    settings: DatabaseSettings = _load(DatabaseSettings, params)
    with _database(settings.database_url) as engine:
        upgrade(engine)
    click.echo(f"database {redact(engine.url)} is at the newest schema")


@cli.command("demo")
@click.option("--orders", default=5000, show_default=True, help="Orders the emulator starts with.")
@click.option("--days", default=14, show_default=True, help="Days of history they span.")
@click.option("--database-url", default=None, help="Target (default: a fresh data/demo.db).")
@click.option("--debug", is_flag=True)
def demo_command(orders: int, days: int, database_url: str | None, debug: bool) -> None:
    """Emulator -> backfill -> edits -> incremental sync -> counts and a query (or a real sync with credentials)."""
    from sync.demo import run_demo

    configure_logging(debug=debug, quiet=not debug)
    run_demo(orders=orders, days=days, database_url=database_url, echo=click.echo)


def _register_emulator() -> None:
    from sync.emulator.cli import emulator_command

    cli.add_command(emulator_command, name="emulator")


_register_emulator()


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: one line on stderr and a meaningful exit status for every failure."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    tune_malloc()
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        result = cli.main(args=args, prog_name="kapture-sync", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except click.exceptions.Abort:
        click.echo("kapture-sync: interrupted", err=True)
        return 130
    except click.UsageError as exc:  # a bad argument: one line naming it, like a bad setting
        click.echo(f"kapture-sync: bad argument: {' '.join(exc.format_message().split())}", err=True)
        return 2
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except SyncError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"kapture-sync: {exc}", err=True)
        return exc.exit_code
    except DBAPIError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"kapture-sync: database error: {str(getattr(exc, 'orig', exc)).splitlines()[0]}", err=True)
        return DatabaseUnavailable.exit_code
    except (KeyboardInterrupt, Terminated, Stopped):
        click.echo("kapture-sync: interrupted", err=True)
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        click.echo(
            f"kapture-sync: unexpected error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            err=True,
        )
        return 70


if __name__ == "__main__":
    raise SystemExit(main())
