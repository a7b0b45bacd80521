"""``python manage.py messenger_check [--json] [--webhook-url URL]``: is every page ready to chat?

A thin adapter over ``messenger.page_checks``: one row per page and check (token, subscription) and
one for the webhook, printed as a table or, with ``--json``, as ``{"ok": bool, "rows": [...]}``.
Exits 1 on any problem and 0 otherwise, so cron or a deploy step can alert on it. Never prints a
token. What each problem means: ``docs/operations-commands.md``.
"""

from __future__ import annotations

import json
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from messenger.page_checks import CheckRow, pages_check
from messenger.pages import pages_configured, pages_unreadable

UNREADABLE_DETAIL = (
    "stored token unreadable: no key in MESSENGER_TOKEN_KEYS decrypts it; put the old key back and run "
    "messenger_page rotate, or add the page again (docs/pages.md)"
)


def format_table(rows: list[CheckRow]) -> str:
    """Aligned columns: page, check, ok/problem, what was found or what to do."""
    body = [(row.page, row.check, "ok" if row.ok else "PROBLEM", row.detail) for row in rows]
    lines = [("page", "check", "result", "what to do"), *body]
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line[:3], widths, strict=True)) + "  " + line[3]
        for line in lines
    )


class Command(BaseCommand):
    help = "Check every page's token and webhook subscription, and the webhook; exit 1 on any problem."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the rows as JSON")
        parser.add_argument(
            "--webhook-url", default="", help="public webhook URL to verify (default: MESSENGER_WEBHOOK_URL)"
        )

    def handle(self, *args, **options) -> None:
        url = options["webhook_url"] or settings.MESSENGER_WEBHOOK_URL
        rows = pages_check(pages=pages_configured(), webhook_url=url)
        # A stored page whose token cannot be decrypted is not served at all: say so first.
        rows[0:0] = [
            CheckRow(page_id, "token", False, UNREADABLE_DETAIL) for page_id in pages_unreadable()
        ]
        ok = all(row.ok for row in rows)
        if options["json"]:
            self.stdout.write(json.dumps({"ok": ok, "rows": [row.as_dict() for row in rows]}, indent=2))
        else:
            self.stdout.write(format_table(rows))
            problems = sum(not row.ok for row in rows)
            self.stdout.write("all checks passed" if ok else f"{problems} problem(s)")
        if not ok:
            sys.exit(1)
