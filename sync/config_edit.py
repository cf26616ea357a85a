"""Writing settings `check` found into the TOML config file, keeping everything else as it was.

Only the keys `check` decides may be written (never a secret): each existing `key = value` line
(top level, `[kapture]` or `[sync]`) gets the new value and keeps its comment; a missing key is
added to `[kapture]`, or at the top when there is no such table. Other keys, comments and layout
are untouched, and the result is read back before it replaces the file. A file listing
`[[accounts]]` is refused: each account's table holds its own overrides, and which one to edit
is a person's call.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sync.errors import SettingsError
from sync.settings import read_config_file

WRITABLE = frozenset({"http_method", "date_format", "end_inclusive", "timezone", "page_size", "window"})
_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\s*(#.*)?$")
_ARRAY_TABLE = re.compile(r"^\s*\[\[")
_KEY = re.compile(
    r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_\-]+)(?P<eq>\s*=\s*)"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s#\"'\[{]+)(?P<rest>\s*(#.*)?)$"
)
_GROUPS = (None, "kapture", "sync")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_settings(path: Path, values: Mapping[str, Any]) -> None:
    """Set `values` (config keys) in the TOML file at `path`, creating it if need be."""
    unknown = sorted(set(values) - WRITABLE)
    if unknown:
        raise ValueError(f"not a setting check writes: {', '.join(unknown)}")
    original = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        parsed = tomllib.loads(original)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"bad setting: config file {path} is not valid TOML: {exc}") from None
    if isinstance(parsed.get("accounts"), list):
        # Each [[accounts]] table holds its own overrides: a value written at the top would reach the
        # accounts that were not checked, and not the checked one if its table sets the key.
        shown = ", ".join(f"{key} = {toml_value(value)}" for key, value in values.items())
        raise SettingsError(
            f"bad setting: {path} lists [[accounts]], whose tables --write-config does not edit: "
            f"set {shown} in the checked account's table by hand"
        )
    text = _edited(original, values)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    try:
        written = read_config_file(temporary)
        wrong = [key for key, value in values.items() if written.get(key) != value]
        if wrong:
            raise SettingsError(
                f"bad setting: could not write {', '.join(wrong)} into {path} (a key set some other way, e.g. an "
                "inline table?): edit it by hand"
            )
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o7777)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _edited(original: str, values: Mapping[str, Any]) -> str:
    lines = original.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    table: str | None = None
    tables: dict[str | None, int] = {None: 0}  # table -> index after its last key line (or header)
    pending = dict(values)
    for index, line in enumerate(lines):
        if _ARRAY_TABLE.match(line):
            table = "[[array]]"
            continue
        header = _TABLE.match(line)
        if header:
            table = header.group(1).strip().strip("\"'")
            tables.setdefault(table, index + 1)
            continue
        key = _KEY.match(line.rstrip("\n"))
        if table in _GROUPS and key:
            tables[table] = index + 1
            name = key.group("key")
            if name in values:
                lines[index] = f"{key.group('indent')}{name}{key.group('eq')}{toml_value(values[name])}"
                lines[index] += f"{key.group('rest')}\n"
                pending.pop(name, None)
        elif table is None and line.strip() and not line.lstrip().startswith("#"):
            tables[None] = index + 1
    if not pending:
        return "".join(lines)
    added = [f"{name} = {toml_value(value)}  # found by kapture-sync check\n" for name, value in pending.items()]
    if not lines:
        added.insert(0, "# kapture-sync settings (every key: config/kapture-sync.example.toml)\n")
    if "kapture" in tables:
        at = tables["kapture"]
    elif len(tables) == 1:
        at = len(lines)  # no tables: append
    else:
        at = tables[None]  # top-level keys must come before the first table
    return "".join(lines[:at] + added + lines[at:])
