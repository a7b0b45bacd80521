"""Indexes for a sender's open rows (the drain) and for retention (finished rows, oldest first).

On PostgreSQL they are built ``CONCURRENTLY`` (hence ``atomic = False``): a plain ``CREATE INDEX``
would block the webhook's inserts into this table for as long as the build takes on a big inbox.
Other backends (SQLite in development) build them the ordinary way.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    """``AddIndexConcurrently`` on PostgreSQL, ``AddIndex`` elsewhere."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("conversations", "0001_initial"),
        ("messenger", "0002_inbound_not_before_job_id"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="inboundmessage",
            index=models.Index(
                condition=models.Q(("status__in", ["pending", "queued", "processing", "deferred"])),
                fields=["page_id", "psid", "fb_timestamp", "id"],
                name="inbound_sender_open_idx",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="inboundmessage",
            index=models.Index(fields=["finished_at"], name="inbound_finished_idx"),
        ),
    ]
