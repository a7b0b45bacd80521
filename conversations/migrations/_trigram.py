"""GIN trigram indexes for search, shared by the migrations that add them (PostgreSQL only).

Django's migration loader skips modules whose name starts with ``_``, so this is a helper, not a
migration. The indexes are on ``UPPER(column)``, the expression Django's ``icontains`` compares, so
PostgreSQL serves ``icontains`` searches from them; SQLite gets no index and searches with a scan.
"""

from django.db import migrations


def trigram_indexes(table_columns: list[tuple[str, str, str]]) -> migrations.RunPython:
    """A RunPython pair creating (and dropping) one GIN trigram index per ``(name, table, column)``."""

    def forwards(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for name, table, column in table_columns:
            schema_editor.execute(
                f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" USING gin ((UPPER("{column}"::text)) gin_trgm_ops)'
            )

    def backwards(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for name, _table, _column in table_columns:
            schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')

    return migrations.RunPython(forwards, backwards)
