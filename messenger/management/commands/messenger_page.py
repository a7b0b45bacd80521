"""``python manage.py messenger_page add|list|remove|rotate``: the pages this channel serves.

A thin adapter over ``messenger.pages``. ``add PAGE_ID --name NAME`` reads the page token from
standard input, one line, never from the command line (where ``ps``, shell history and CI logs
would keep it): typed at a terminal it is not echoed (``getpass``), piped it is read as is
(``op read ... | manage.py messenger_page add ...``). An empty token is refused. Adding a page that
exists replaces its token. Nothing this command prints holds a token. Usage: ``docs/pages.md``.
"""

from __future__ import annotations

import getpass
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from messenger.models import Page
from messenger.pages import page_add, page_remove, pages_configured, pages_rotate
from messenger.token_crypto import TokenUnreadable


class Command(BaseCommand):
    help = "Add (token on standard input), list, remove the pages this channel serves; rotate their encryption."
    # call_command(..., stdin=io.StringIO("token\n")) in tests; sys.stdin otherwise.
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", metavar="{add,list,remove,rotate}", required=True)
        add = actions.add_parser("add", help="add a page, or replace its token; the token is read from standard input")
        add.add_argument("page_id", metavar="PAGE_ID", help="Facebook's page id")
        add.add_argument("--name", default="", help="a name for people (shown by list and the admin)")
        actions.add_parser("list", help="the pages served, where each comes from; never a token")
        remove = actions.add_parser("remove", help="stop serving a page added with add")
        remove.add_argument("page_id", metavar="PAGE_ID")
        actions.add_parser("rotate", help="re-encrypt every stored token with the first MESSENGER_TOKEN_KEYS key")

    def handle(self, *args, **options) -> None:
        action = options["action"]
        try:
            if action == "add":
                self._add(page_id=options["page_id"], name=options["name"], stdin=options.get("stdin"))
            elif action == "list":
                self._list()
            elif action == "remove":
                self._remove(page_id=options["page_id"])
            else:
                count = pages_rotate()
                self.stdout.write(f"Re-encrypted {count} page token(s) with the first key of MESSENGER_TOKEN_KEYS.")
        except (ImproperlyConfigured, TokenUnreadable) as exc:
            raise CommandError(str(exc)) from None

    def _read_token(self, stdin) -> str:
        stream = stdin if stdin is not None else sys.stdin
        if stdin is None and stream.isatty():
            return getpass.getpass("Page access token (not echoed): ", stream=self.stderr._out)
        return stream.readline().strip()

    def _add(self, *, page_id: str, name: str, stdin) -> None:
        token = self._read_token(stdin)
        if not token:
            raise CommandError("No token on standard input: nothing was stored.")
        try:
            page, created = page_add(page_id=page_id, name=name, token=token)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        verb = "Added" if created else "Replaced the token of"
        self.stdout.write(f"{verb} page {page.id} ({page.name or 'no name'}).")

    def _list(self) -> None:
        rows = {page.id: page for page in Page.objects.order_by("id")}
        served = {page.page_id: page for page in pages_configured()}
        self.stdout.write("PAGE_ID\tNAME\tSOURCE\tSTATE")
        for page_id, row in rows.items():
            state = "served" if page_id in served else ("inactive" if not row.active else "token unreadable")
            self.stdout.write(f"{page_id}\t{row.name or '-'}\tdatabase\t{state}")
        for page in served.values():
            if page.page_id not in rows:
                label = page.page_id or "(any page; MESSENGER_PAGE_ID unset)"
                self.stdout.write(f"{label}\t-\tMESSENGER_PAGE_ACCESS_TOKEN\tserved")
        if not rows and not served:
            self.stdout.write("(no page: sends are dry runs)")

    def _remove(self, *, page_id: str) -> None:
        if not page_remove(page_id=page_id):
            raise CommandError(f"No page {page_id} was added with messenger_page add.")
        self.stdout.write(f"Removed page {page_id}.")
