"""Every setting, validated in one place: flag > environment > config file > default.

Unknowns about the Kapture API (date format, inclusive end dates, page size, HTTP method) are
settings with sensible defaults rather than constants, because the vendor does not document them.
"""

from __future__ import annotations

import base64
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from sync.errors import SettingsError

DEFAULT_CONFIG_PATH = Path("config/kapture-sync.toml")
ENDPOINT_PATH = "/ms/customer-search/order-search/api/v1/pull-internal"
_SECRET_FIELDS = {"password", "auth_token"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


S = TypeVar("S", bound="DatabaseSettings")


def parse_duration(value: object) -> timedelta:
    """Read `900`, `90s`, `15m`, `6h` or `1d` as a duration."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r} (use seconds, or a number with s, m, h or d)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class DatabaseSettings(BaseSettings):
    """Just the target database: enough for `db upgrade`, `status` and Alembic's `env.py`."""

    # allow_inf_nan: `timeout=inf` would reach httpx (and `nan` compare false with every bound).
    model_config = SettingsConfigDict(
        populate_by_name=True, extra="ignore", case_sensitive=False, env_ignore_empty=True, allow_inf_nan=False
    )

    database_url: str = Field(
        "sqlite:///data/kapture.db", validation_alias=_env("KAPTURE_SYNC_DATABASE_URL", "database_url")
    )
    timezone: str = Field("Asia/Kolkata", validation_alias=_env("KAPTURE_TIMEZONE", "timezone"))

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Settings(DatabaseSettings):
    """One account's connection plus how it is synced. Field names are the config-file keys."""

    model_config = SettingsConfigDict(
        populate_by_name=True, extra="forbid", case_sensitive=False, env_ignore_empty=True, allow_inf_nan=False
    )

    # --- Kapture account -------------------------------------------------------------------
    base_url: str = Field(validation_alias=_env("KAPTURE_BASE_URL", "base_url"))
    username: str | None = Field(None, validation_alias=_env("KAPTURE_USERNAME", "username"))
    password: SecretStr | None = Field(None, validation_alias=_env("KAPTURE_PASSWORD", "password"))
    auth_token: SecretStr | None = Field(None, validation_alias=_env("KAPTURE_AUTH_TOKEN", "auth_token"))
    cm_id: int = Field(gt=0, lt=2**63, validation_alias=_env("KAPTURE_CM_ID", "cm_id"))  # a bigint column

    # --- what the API is not documented to do: settings, not constants -------------------------
    endpoint_path: str = Field(ENDPOINT_PATH, validation_alias=_env("KAPTURE_ENDPOINT_PATH", "endpoint_path"))
    http_method: Literal["POST", "GET"] = Field("POST", validation_alias=_env("KAPTURE_HTTP_METHOD", "http_method"))
    date_format: Literal["date", "datetime"] = Field(
        "date", validation_alias=_env("KAPTURE_DATE_FORMAT", "date_format")
    )
    end_inclusive: bool = Field(True, validation_alias=_env("KAPTURE_END_INCLUSIVE", "end_inclusive"))
    page_size: int = Field(1000, ge=1, le=100_000, validation_alias=_env("KAPTURE_PAGE_SIZE", "page_size"))
    numbers_as_strings: bool = Field(True, validation_alias=_env("KAPTURE_NUMBERS_AS_STRINGS", "numbers_as_strings"))
    sort_param: str = Field("", validation_alias=_env("KAPTURE_SORT_PARAM", "sort_param"))

    # --- HTTP and retries --------------------------------------------------------------------
    timeout: float = Field(30.0, gt=0, validation_alias=_env("KAPTURE_TIMEOUT", "timeout"))
    max_attempts: int = Field(6, ge=1, validation_alias=_env("KAPTURE_MAX_ATTEMPTS", "max_attempts"))
    retry_max_seconds: float = Field(
        300.0, gt=0, validation_alias=_env("KAPTURE_RETRY_MAX_SECONDS", "retry_max_seconds")
    )
    backoff_base: float = Field(0.5, ge=0, validation_alias=_env("KAPTURE_BACKOFF_BASE", "backoff_base"))
    backoff_max: float = Field(30.0, ge=0, validation_alias=_env("KAPTURE_BACKOFF_MAX", "backoff_max"))
    requests_per_second: float = Field(
        50.0, ge=0, validation_alias=_env("KAPTURE_REQUESTS_PER_SECOND", "requests_per_second")
    )

    # --- the sync itself -----------------------------------------------------------------------
    start_date: date | None = Field(None, validation_alias=_env("KAPTURE_SYNC_START_DATE", "start_date"))
    lookback_days: int = Field(7, ge=0, validation_alias=_env("KAPTURE_SYNC_LOOKBACK_DAYS", "lookback_days"))
    window: timedelta = Field(timedelta(days=1), validation_alias=_env("KAPTURE_SYNC_WINDOW", "window"))
    overlap_windows: int = Field(1, ge=0, validation_alias=_env("KAPTURE_SYNC_OVERLAP_WINDOWS", "overlap_windows"))
    rescan_factor: float = Field(0.25, gt=0, validation_alias=_env("KAPTURE_SYNC_RESCAN_FACTOR", "rescan_factor"))
    rescan_horizon_days: int = Field(
        90, ge=0, validation_alias=_env("KAPTURE_SYNC_RESCAN_HORIZON_DAYS", "rescan_horizon_days")
    )
    split_offset: int = Field(10_000, ge=1, validation_alias=_env("KAPTURE_SYNC_SPLIT_OFFSET", "split_offset"))
    min_slice: timedelta = Field(timedelta(minutes=1), validation_alias=_env("KAPTURE_SYNC_MIN_SLICE", "min_slice"))
    floor_margin: timedelta = Field(
        timedelta(hours=1), validation_alias=_env("KAPTURE_SYNC_FLOOR_MARGIN", "floor_margin")
    )
    lease_seconds: float = Field(600.0, gt=0, validation_alias=_env("KAPTURE_SYNC_LEASE_SECONDS", "lease_seconds"))
    history: bool = Field(True, validation_alias=_env("KAPTURE_SYNC_HISTORY", "history"))
    detect_deletions: bool = Field(False, validation_alias=_env("KAPTURE_SYNC_DETECT_DELETIONS", "detect_deletions"))
    deletion_max_share: float = Field(
        0.1, gt=0, le=1, validation_alias=_env("KAPTURE_SYNC_DELETION_MAX_SHARE", "deletion_max_share")
    )
    # Windows fetched at once. 6: with 100 ms per request, 4 reached only 2.7-2.9 times a
    # one-request-at-a-time reader, 6 reach 3.0-3.7 (docs/performance.md); every request still
    # goes through the one request-rate budget, so a vendor sees no more than it allows.
    concurrency: int = Field(6, ge=1, le=64, validation_alias=_env("KAPTURE_SYNC_CONCURRENCY", "concurrency"))
    commit_rows: int = Field(5000, ge=1, validation_alias=_env("KAPTURE_SYNC_COMMIT_ROWS", "commit_rows"))
    commit_seconds: float = Field(1.0, gt=0, validation_alias=_env("KAPTURE_SYNC_COMMIT_SECONDS", "commit_seconds"))
    processes: int = Field(
        default_factory=lambda: 1 if (os.cpu_count() or 1) >= 2 else 0,
        ge=0,
        le=16,
        validation_alias=_env("KAPTURE_SYNC_PROCESSES", "processes"),
    )

    # --- the daemon (sync/daemon.py) -------------------------------------------------------------
    name: str | None = Field(None, min_length=1, validation_alias=_env("KAPTURE_ACCOUNT_NAME", "name"))
    interval: timedelta = Field(timedelta(minutes=15), validation_alias=_env("KAPTURE_SYNC_INTERVAL", "interval"))
    reconcile_cron: str = Field("0 2 * * *", validation_alias=_env("KAPTURE_SYNC_RECONCILE_CRON", "reconcile_cron"))
    failure_backoff_max: timedelta = Field(
        timedelta(hours=1), validation_alias=_env("KAPTURE_SYNC_FAILURE_BACKOFF_MAX", "failure_backoff_max")
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, validation_alias=_env("KAPTURE_SYNC_METRICS_PORT", "metrics_port")
    )
    metrics_host: str = Field("0.0.0.0", validation_alias=_env("KAPTURE_SYNC_METRICS_HOST", "metrics_host"))

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+$", value):
            raise ValueError("must be scheme, host and optional port, e.g. https://acme.kapturecrm.com")
        if "@" in value:
            raise ValueError("must not contain credentials: use KAPTURE_USERNAME/KAPTURE_PASSWORD")
        try:
            httpx.URL(value)
        except httpx.InvalidURL as exc:  # `http://[::1` passes the pattern
            raise ValueError(f"is not a URL ({exc})") from None
        return value

    @field_validator("window", "min_slice", "floor_margin", "interval", "failure_backoff_max", mode="before")
    @classmethod
    def _read_duration(cls, value: object) -> timedelta:
        return parse_duration(value)

    @field_validator("interval", "failure_backoff_max")
    @classmethod
    def _at_least_a_second(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1 second")
        return value

    @field_validator("reconcile_cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        """Five cron fields (minute hour day month weekday), read in the account's zone; `off` disables."""
        from apscheduler.triggers.cron import CronTrigger

        value = " ".join(value.split())
        if value.lower() == "off":
            return "off"
        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"not a cron expression (minute hour day month weekday, or off): {exc}") from None
        return value

    @field_validator("http_method", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("auth_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _BASE64.match(_bare_token(value.get_secret_value())):
            raise ValueError("must be the base64 text of user:password (Basic token), on one line")
        return value

    @field_validator("username", "password")
    @classmethod
    def _check_header_safe(cls, value: Any) -> Any:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is not None and any(ch in text for ch in "\r\n"):
            raise ValueError("must not contain a line break")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.auth_token is None and not (self.username and self.password):
            raise ValueError("set KAPTURE_USERNAME and KAPTURE_PASSWORD, or KAPTURE_AUTH_TOKEN")
        day = timedelta(days=1)
        if self.window <= timedelta(0):
            raise ValueError("KAPTURE_SYNC_WINDOW must be positive")
        if self.date_format == "date" and self.window % day:
            raise ValueError("KAPTURE_SYNC_WINDOW must be whole days when KAPTURE_DATE_FORMAT is 'date'")
        if self.window < day and day % self.window:
            raise ValueError("KAPTURE_SYNC_WINDOW shorter than a day must divide 24h evenly")
        if self.window > day and self.window % day:
            raise ValueError("KAPTURE_SYNC_WINDOW longer than a day must be whole days")
        return self

    @property
    def authorization(self) -> SecretStr:
        """The `Authorization` header value; kept secret so it never lands in a repr or a log."""
        if self.auth_token is not None:
            token = _bare_token(self.auth_token.get_secret_value())
        else:
            raw = f"{self.username}:{self.password.get_secret_value() if self.password else ''}"
            token = base64.b64encode(raw.encode()).decode()
        return SecretStr(f"Basic {token}")

    def default_start(self, today: date) -> date:
        return self.start_date or today - timedelta(days=30)

    @property
    def label(self) -> str:
        """How logs, metrics and health name the account: its `name`, else its cm_id."""
        return self.name or str(self.cm_id)


_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


def _bare_token(value: str) -> str:
    """The token without a leading `Basic ` and without the line breaks `base64` wraps long output with."""
    return "".join(re.sub(r"^\s*basic\s+", "", value, flags=re.IGNORECASE).split())


def config_path(explicit: str | Path | None, environ: Mapping[str, str] = os.environ) -> Path | None:
    """`--config`, else $KAPTURE_SYNC_CONFIG, else config/kapture-sync.toml when it exists."""
    if explicit:
        return Path(explicit)
    if environ.get("KAPTURE_SYNC_CONFIG"):
        return Path(environ["KAPTURE_SYNC_CONFIG"])
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def read_config_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise SettingsError(f"bad setting: config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"bad setting: config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"bad setting: config file {path} is not valid TOML: it is not UTF-8 text") from None
    # The file may group keys under [kapture] and [sync] tables for readability.
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in ("kapture", "sync"):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    config: str | Path | None = None,
    kind: type[S] = Settings,  # type: ignore[assignment]
) -> S:
    """Build the settings, turning every validation error into one line that names the value.

    When the config file lists `[[accounts]]`, a `Settings` is one of them: the one named by the
    `account` override (`--account`), or the only one.
    """
    file_values = read_config_file(config_path(config))
    listed = file_values.pop("accounts", None)
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    chosen = flags.pop("account", None)
    if issubclass(kind, Settings) and (listed is not None or chosen is not None):
        return cast(S, select_account(load_accounts(overrides, config), chosen))
    return _layered(kind, [flags, ENV, file_values])


ENV = "environment"
# What names an account: in an [[accounts]] table these come from the table (or the variables and
# the secrets file it names), never from the single-account variables or the file's top level.
ACCOUNT_KEYS = ("name", "base_url", "cm_id", "username", "password", "auth_token")
# One daemon, one database and one metrics port for all accounts: not settable per account.
PROCESS_KEYS = ("database_url", "metrics_port", "metrics_host")


def _layered(kind: type[S], layers: list[Any], drop_env: tuple[str, ...] = (), label: str = "") -> S:
    """`kind` from the given layers, first wins: dicts of values, or `ENV` for the environment."""

    class _Layered(kind):  # type: ignore[valid-type,misc]
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return tuple(
                _EnvWithout(settings_cls, env_settings, drop_env)
                if layer is ENV
                else InitSettingsSource(settings_cls, init_kwargs=layer)
                for layer in layers
            )

    try:
        return _Layered()  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc, label)) from None


class _EnvWithout(PydanticBaseSettingsSource):
    """The environment less the variables of some settings (an account's own keys)."""

    def __init__(
        self, settings_cls: type[BaseSettings], env: PydanticBaseSettingsSource, fields: tuple[str, ...]
    ) -> None:
        super().__init__(settings_cls)
        self._env = env
        self._drop = {_setting_name(f).lower() for f in fields} | {f.lower() for f in fields}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._env().items() if k.lower() not in self._drop}


def load_accounts(
    overrides: Mapping[str, Any] | None = None,
    config: str | Path | None = None,
    environ: Mapping[str, str] = os.environ,
) -> list[Settings]:
    """Every account to sync: each `[[accounts]]` table of the config file, else the single account.

    An account's settings, first wins: command-line flags, its own table, the environment, the
    file's top level, the defaults. Its name, URL, cm_id and credentials come from its table
    only: `username_env`/`password_env`/`auth_token_env` name environment variables holding them,
    `secrets_file` a TOML file holding `username`/`password`/`auth_token`.
    """
    path = config_path(config, environ)
    file_values = read_config_file(path)
    listed = file_values.pop("accounts", None)
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    flags.pop("account", None)
    if listed is None:
        return [_layered(Settings, [flags, ENV, file_values])]
    if not isinstance(listed, list) or not listed or not all(isinstance(t, dict) for t in listed):
        raise SettingsError("bad setting: accounts must be one or more [[accounts]] tables")
    if clash := sorted(set(flags) & set(ACCOUNT_KEYS)):
        raise SettingsError(
            f"bad setting: {', '.join(clash)} given on the command line, but the config lists [[accounts]]: "
            "use --account to choose one"
        )
    shared = {k: v for k, v in file_values.items() if k not in ACCOUNT_KEYS}
    accounts = []
    for number, table in enumerate(listed, 1):
        label = f"accounts[{number}]" + (f" ({table['name']})" if isinstance(table.get("name"), str) else "")
        values = _account_values(table, path, environ, label)
        accounts.append(_layered(Settings, [flags, values, ENV, shared], drop_env=ACCOUNT_KEYS, label=label))
    for what, key in (("name", lambda a: a.label), ("cm_id", lambda a: a.cm_id)):
        seen = [key(a) for a in accounts]
        if dupes := sorted({str(v) for v in seen if seen.count(v) > 1}):
            raise SettingsError(f"bad setting: accounts: two accounts share the {what} {', '.join(dupes)}")
    return accounts


_CREDENTIALS = ("username", "password", "auth_token")


def _account_values(table: dict[str, Any], path: Path | None, environ: Mapping[str, str], label: str) -> dict[str, Any]:
    """An [[accounts]] table with its credentials read from the variables and the file it names."""
    values = dict(table)
    if wrong := sorted(set(values) & set(PROCESS_KEYS)):
        raise SettingsError(
            f"bad setting: {label}: {', '.join(wrong)} is shared by all accounts: set it at the top level"
        )
    for key in _CREDENTIALS:
        variable = values.pop(f"{key}_env", None)
        if variable is None:
            continue
        if not isinstance(variable, str) or not environ.get(variable):
            raise SettingsError(f"bad setting: {label}: {key}_env names the variable {variable!r}, which is not set")
        values[key] = environ[variable]
    secrets = values.pop("secrets_file", None)
    if secrets is not None:
        secrets_path = Path(str(secrets)).expanduser()
        if not secrets_path.is_absolute() and path is not None:
            secrets_path = path.parent / secrets_path
        try:
            with secrets_path.open("rb") as handle:
                found = tomllib.load(handle)
        except OSError as exc:
            raise SettingsError(f"bad setting: {label}: secrets_file {secrets_path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError:
            raise SettingsError(f"bad setting: {label}: secrets_file {secrets_path} is not valid TOML") from None
        if other := sorted(set(found) - set(_CREDENTIALS)):
            raise SettingsError(
                f"bad setting: {label}: secrets_file {secrets_path} may hold only username, password and "
                f"auth_token, not {', '.join(other)}"
            )
        for key, value in found.items():
            values.setdefault(key, value)
    return values


def select_account(accounts: list[Settings], chosen: object | None) -> Settings:
    """The account `--account` names (by name or cm_id), or the only one."""
    if chosen is None:
        if len(accounts) == 1:
            return accounts[0]
        names = ", ".join(a.label for a in accounts)
        raise SettingsError(
            f"bad setting: the config lists {len(accounts)} accounts ({names}): choose one with --account"
        )
    for account in accounts:
        if str(chosen) in (account.label, str(account.cm_id)):
            return account
    raise SettingsError(
        f"bad setting: --account {chosen} is not among the accounts ({', '.join(a.label for a in accounts)})"
    )


def _setting_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    alias = getattr(info, "validation_alias", None) if info else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return field


def _field_of(name: str) -> str:
    """The field a validation error's location names, whether by field name or by variable."""
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices) and name.lower() in (str(c).lower() for c in alias.choices):
            return field
    return name


def _echoable(field: str, value: object) -> bool:
    """Show a bad value only for a known, non-secret setting, and never a URL carrying credentials."""
    if field not in Settings.model_fields or field in _SECRET_FIELDS or value is None:
        return False
    return not (isinstance(value, str) and "@" in value)


def describe_errors(exc: ValidationError, account: str = "") -> str:
    """One line naming every bad value, without ever echoing a secret; an [[accounts]] table's by key."""
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        if account:  # an [[accounts]] table's keys are named as its keys
            field = _field_of(field)
        name = (field if account and field in ACCOUNT_KEYS else _setting_name(field)) if field else "settings"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required"
        elif error["type"] == "extra_forbidden":
            message = "is not a setting"
        elif _echoable(field, error.get("input")):
            message = f"{message} (got {error['input']!r})"
        parts.append(f"{name} {message}" if field else message)
    return "bad setting: " + (f"{account}: " if account else "") + "; ".join(parts)


def today_in(zone: ZoneInfo, now: datetime | None = None) -> date:
    return (now or datetime.now(tz=zone)).astimezone(zone).date()
