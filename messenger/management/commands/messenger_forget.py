"""``python manage.py messenger_forget --page PAGE_ID --psid PSID``: delete everything about one user.

A thin adapter over ``messenger.forget.user_forget``: prints what it deleted, per kind, and the
service writes the audit line ``messenger.forget.done`` (page, counts, actor; never the PSID). The
PSID is not printed either: terminal output ends up in shell histories and CI logs.
"""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError, CommandParser

from messenger.forget import user_forget


class Command(BaseCommand):
    help = "Delete everything stored about one user: inbox rows, parts, conversations, messages, cache, events."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--page", required=True, help="the page id the user wrote to")
        parser.add_argument("--psid", required=True, help="the user's page-scoped id")
        parser.add_argument("--actor", default="", help="who asks, for the audit line (default: the OS user)")

    def handle(self, *args, **options) -> None:
        page_id, psid = options["page"].strip(), options["psid"].strip()
        if not page_id or not psid:
            raise CommandError("--page and --psid must not be empty")
        actor = options["actor"] or f"command:{_os_user()}"
        result = user_forget(page_id=page_id, psid=psid, actor=actor)
        self.stdout.write(f"forgot one user of page {page_id}:")
        for kind, count in result.as_dict().items():
            self.stdout.write(f"deleted {count} {kind}")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers): still audited, as "unknown"
        return "unknown"
