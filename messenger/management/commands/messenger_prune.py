"""``python manage.py messenger_prune [--dry-run] [--batch-size N]``: apply the retention settings.

A thin adapter over ``messenger.retention.messenger_prune``: deletes finished inbound rows, their
parts and events older than ``MESSENGER_RETENTION_DAYS``, and conversations with their messages
inactive for ``CONVERSATIONS_RETENTION_DAYS``, in batches. ``--dry-run`` deletes nothing and prints
what would go. The same prune runs daily on the rq scheduler; this command is for a first run on a
big backlog, or for cron where no worker runs the scheduler.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from messenger.retention import messenger_prune


class Command(BaseCommand):
    help = "Delete what is past MESSENGER_RETENTION_DAYS / CONVERSATIONS_RETENTION_DAYS, in batches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
        parser.add_argument(
            "--batch-size", type=int, default=None, help="rows per DELETE (default: MESSENGER_PRUNE_BATCH_SIZE)"
        )

    def handle(self, *args, **options) -> None:
        dry_run = options["dry_run"]
        result = messenger_prune(dry_run=dry_run, batch_size=options["batch_size"])
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(
            f"retention: {settings.MESSENGER_RETENTION_DAYS} days for inbound rows and events, "
            f"{settings.CONVERSATIONS_RETENTION_DAYS} days for conversations (0 = kept for ever)"
        )
        for kind, count in result.as_dict().items():
            self.stdout.write(f"{verb} {count} {kind}")
