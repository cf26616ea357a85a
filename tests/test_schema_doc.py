"""docs/schema.md is generated, complete and current: every table, view and column has a type and a meaning."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect

from sync.schema_doc import DOC_PATH, columns_of, dictionary, main, render


def test_the_data_dictionary_file_is_up_to_date():
    assert DOC_PATH.read_text(encoding="utf-8") == render(), "run `python -m sync.schema_doc`"


def test_check_mode_fails_on_a_stale_file(tmp_path: Path):
    stale = tmp_path / "schema.md"
    stale.write_text(render().replace("one row per order", "one row per thing"), encoding="utf-8")
    assert main(["--check", "--output", str(stale)]) == 1
    assert main(["--output", str(stale)]) == 0 and main(["--check", "--output", str(stale)]) == 0


def test_every_table_view_and_column_of_the_migrated_schema_is_described(engine: Engine):
    inspector = inspect(engine)
    built = {
        name: [c["name"] for c in inspector.get_columns(name)]
        for name in [*inspector.get_table_names(), *inspector.get_view_names()]
    }
    described = {name: [c for c, _, _ in columns_of(name)] for name in dictionary()}
    assert {n: sorted(c) for n, c in built.items()} == {n: sorted(c) for n, c in described.items()}
    assert all(meaning.strip() and kind for name in described for _, kind, meaning in columns_of(name))
