"""``python manage.py messenger_profile set|show|delete``: the page's Messenger Profile.

A thin adapter over ``messenger.profile``: parse arguments, call one function, print. ``set`` and
``delete`` take ``--dry-run`` to print the exact JSON they would send (on stdout, so it can be
piped) and send nothing; without MESSENGER_PAGE_ACCESS_TOKEN they always dry-run, with a note on
stderr. Errors (an invalid profile, a Graph API refusal) exit non-zero with a clear message. The
page token is never printed. ``--page PAGE_ID`` chooses the page (``messenger.pages.page_choose``):
required when several pages are served, the only page by default. Usage: ``docs/profile.md``.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from messenger.pages import PageChoiceError, page_choose
from messenger.profile import (
    DEFAULT_PROFILE_FILE,
    DELETABLE_FIELDS,
    PROFILE_FIELDS,
    ProfileError,
    profile_delete,
    profile_delete_body,
    profile_encode,
    profile_load,
    profile_set,
    profile_show,
    profile_url,
)


class Command(BaseCommand):
    help = "Set, show or delete the page's Messenger Profile (Get Started, greeting, menu, ice breakers)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--page",
            metavar="PAGE_ID",
            default="",
            help="the page whose profile to change (required when several pages are served)",
        )
        actions = parser.add_subparsers(dest="action", metavar="{set,show,delete}", required=True)

        set_parser = actions.add_parser("set", help="send the profile file to the Messenger Profile API")
        set_parser.add_argument(
            "--file",
            default=str(DEFAULT_PROFILE_FILE),
            help=f"profile JSON file (default: {DEFAULT_PROFILE_FILE.name} in the messenger app)",
        )
        set_parser.add_argument("--dry-run", action="store_true", help="print the JSON, send nothing")

        show_parser = actions.add_parser("show", help="print the page's current profile as JSON")
        show_parser.add_argument(
            "fields",
            nargs="*",
            metavar="FIELD",
            help=f"fields to show (default: {', '.join(PROFILE_FIELDS)})",
        )

        delete_parser = actions.add_parser("delete", help="delete profile fields")
        delete_parser.add_argument(
            "fields", nargs="+", metavar="FIELD", help=f"one or more of: {', '.join(DELETABLE_FIELDS)}"
        )
        delete_parser.add_argument("--dry-run", action="store_true", help="print the JSON, send nothing")

    def handle(self, *args, **options) -> None:
        try:
            page = page_choose(page_id=options["page"] or None)
        except PageChoiceError as exc:
            raise CommandError(str(exc)) from exc
        self.page_id = page.page_id if page is not None else ""
        self.has_token = page is not None
        try:
            if options["action"] == "set":
                self._set(path=options["file"], dry_run=options["dry_run"])
            elif options["action"] == "show":
                self._show(fields=options["fields"] or list(PROFILE_FIELDS))
            else:
                self._delete(fields=options["fields"], dry_run=options["dry_run"])
        except ProfileError as exc:
            raise CommandError(str(exc)) from exc

    def _dry_run(self, *, method: str, body: dict, requested: bool) -> bool:
        """Print the body instead of sending it when asked to, or when there is no token."""
        if not requested and self.has_token:
            return False
        if not requested:
            self.stderr.write("MESSENGER_PAGE_ACCESS_TOKEN is not set: dry run, nothing is sent.")
        self.stderr.write(f"Dry run: would {method} {profile_url()} with this body:")
        self.stdout.write(profile_encode(body=body))
        return True

    def _set(self, *, path: str, dry_run: bool) -> None:
        profile = profile_load(path)
        if self._dry_run(method="POST", body=profile, requested=dry_run):
            return
        answer = profile_set(profile=profile, page_id=self.page_id)
        self.stdout.write(
            f"Messenger profile set ({', '.join(profile)}): {json.dumps(answer, ensure_ascii=False)}"
        )

    def _show(self, *, fields: list[str]) -> None:
        self.stdout.write(json.dumps(profile_show(fields=fields, page_id=self.page_id), ensure_ascii=False, indent=2))

    def _delete(self, *, fields: list[str], dry_run: bool) -> None:
        body = profile_delete_body(fields=fields)
        if self._dry_run(method="DELETE", body=body, requested=dry_run):
            return
        answer = profile_delete(fields=body["fields"], page_id=self.page_id)
        self.stdout.write(
            f"Messenger profile fields deleted ({', '.join(body['fields'])}): "
            f"{json.dumps(answer, ensure_ascii=False)}"
        )
