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
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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

    model_config = SettingsConfigDict(
        populate_by_name=True, extra="ignore", case_sensitive=False, env_ignore_empty=True
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
        populate_by_name=True, extra="forbid", case_sensitive=False, env_ignore_empty=True
    )

    # --- Kapture account -------------------------------------------------------------------
    base_url: str = Field(validation_alias=_env("KAPTURE_BASE_URL", "base_url"))
    username: str | None = Field(None, validation_alias=_env("KAPTURE_USERNAME", "username"))
    password: SecretStr | None = Field(None, validation_alias=_env("KAPTURE_PASSWORD", "password"))
    auth_token: SecretStr | None = Field(None, validation_alias=_env("KAPTURE_AUTH_TOKEN", "auth_token"))
    cm_id: int = Field(gt=0, validation_alias=_env("KAPTURE_CM_ID", "cm_id"))

    # --- what the API is not documented to do: settings, not constants -------------------------
    endpoint_path: str = Field(ENDPOINT_PATH, validation_alias=_env("KAPTURE_ENDPOINT_PATH", "endpoint_path"))
    http_method: Literal["POST", "GET"] = Field("POST", validation_alias=_env("KAPTURE_HTTP_METHOD", "http_method"))
    date_format: Literal["date", "datetime"] = Field(
        "date", validation_alias=_env("KAPTURE_DATE_FORMAT", "date_format")
    )
    end_inclusive: bool = Field(True, validation_alias=_env("KAPTURE_END_INCLUSIVE", "end_inclusive"))
    page_size: int = Field(100, ge=1, le=100_000, validation_alias=_env("KAPTURE_PAGE_SIZE", "page_size"))
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

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+$", value):
            raise ValueError("must be scheme, host and optional port, e.g. https://acme.kapturecrm.com")
        if "@" in value:
            raise ValueError("must not contain credentials: use KAPTURE_USERNAME/KAPTURE_PASSWORD")
        return value

    @field_validator("window", "min_slice", "floor_margin", mode="before")
    @classmethod
    def _read_duration(cls, value: object) -> timedelta:
        return parse_duration(value)

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
    """Build the settings, turning every validation error into one line that names the value."""
    file_values = read_config_file(config_path(config))
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}

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
            return (init_settings, env_settings, InitSettingsSource(settings_cls, init_kwargs=file_values))

    try:
        return _Layered(**flags)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc)) from None


def _setting_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    alias = getattr(info, "validation_alias", None) if info else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return field


def _echoable(field: str, value: object) -> bool:
    """Show a bad value only for a known, non-secret setting, and never a URL carrying credentials."""
    if field not in Settings.model_fields or field in _SECRET_FIELDS or value is None:
        return False
    return not (isinstance(value, str) and "@" in value)


def describe_errors(exc: ValidationError) -> str:
    """One line naming every bad value, without ever echoing a secret."""
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        name = _setting_name(field) if field else "settings"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required"
        elif error["type"] == "extra_forbidden":
            message = "is not a setting"
        elif _echoable(field, error.get("input")):
            message = f"{message} (got {error['input']!r})"
        parts.append(f"{name} {message}" if field else message)
    return "bad setting: " + "; ".join(parts)


def today_in(zone: ZoneInfo, now: datetime | None = None) -> date:
    return (now or datetime.now(tz=zone)).astimezone(zone).date()
