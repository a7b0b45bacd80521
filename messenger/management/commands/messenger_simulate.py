"""``python manage.py messenger_simulate "text" [--psid ID]``: talk to the bot from a terminal.

The message goes through the real V2 path: a body shaped as Facebook sends it, signed with the app
secret, POSTed to ``/messenger/v2/webhook`` through Django's URL routing and middleware (in
process, with Django's test client), kept in the inbox; it is then answered in this process by the
same pipeline a worker runs, with sends forced to dry-run, and the replies are printed. The job the
webhook queued finds the message answered and does nothing; when a running worker takes the message
first, the command waits for that worker's answer and prints it instead.
"""

from __future__ import annotations

import json
import secrets
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.test import Client, override_settings

from messenger.models import InboundMessage
from messenger.outbound import part_summary
from messenger.pipeline import sender_drain
from messenger.signature import compute_signature

DEFAULT_PSID = "1000000000000001"
DEFAULT_PAGE = "100000000000001"


def render_part(body: dict) -> list[str]:
    """A Send API message body as terminal lines: text, then buttons or cards, then quick replies.

    Reads the part as the transcript does (``messenger.outbound.part_summary``), not the body's shape.
    """
    text, structured = part_summary(body)
    lines = [text] if text else []
    lines += [f"  [{b.get('title')}] -> {b.get('payload') or b.get('url')}" for b in structured.get("buttons", [])]
    for card in structured.get("cards", []):
        lines.append(f"  | {card.get('title')}" + (f" - {card['subtitle']}" if card.get("subtitle") else ""))
        lines += [f"  |   [{b.get('title')}] -> {b.get('payload') or b.get('url')}" for b in card.get("buttons", [])]
    if structured.get("quick_replies"):
        lines.append("  quick replies: " + "  ".join(f"[{q.get('title')}]" for q in structured["quick_replies"]))
    return lines


class Command(BaseCommand):
    help = "Sends a text (or a postback payload) to the bot through the signed V2 webhook and prints the replies."

    def add_arguments(self, parser):
        parser.add_argument("text", help="What the user types (or, with --postback, the button's title).")
        parser.add_argument("--psid", default=DEFAULT_PSID, help=f"Sender PSID (default {DEFAULT_PSID}).")
        parser.add_argument("--page", default=DEFAULT_PAGE, help=f"Page id (default {DEFAULT_PAGE}).")
        parser.add_argument("--postback", metavar="PAYLOAD", help="Send a postback with this payload instead.")
        parser.add_argument("--json", action="store_true", help="Print the Send API bodies as JSON.")

    def handle(self, *args, **options):
        now_ms = int(time.time() * 1000)
        mid = f"m_sim_{secrets.token_hex(12)}"
        item = {"sender": {"id": options["psid"]}, "recipient": {"id": options["page"]}, "timestamp": now_ms}
        if options["postback"]:
            item["postback"] = {"mid": mid, "title": options["text"], "payload": options["postback"]}
        else:
            item["message"] = {"mid": mid, "text": options["text"]}
        body = json.dumps({"object": "page", "entry": [{"id": options["page"], "time": now_ms, "messaging": [item]}]})
        raw = body.encode("utf-8")

        secret = settings.MESSENGER_APP_SECRET or secrets.token_hex(16)
        hosts = [*settings.ALLOWED_HOSTS, "testserver"]
        with override_settings(MESSENGER_APP_SECRET=secret, ALLOWED_HOSTS=hosts, MESSENGER_PAGE_ACCESS_TOKEN=""):
            response = Client().post(
                "/messenger/v2/webhook",
                data=raw,
                content_type="application/json",
                HTTP_X_HUB_SIGNATURE_256=compute_signature(body=raw, secret=secret),
            )
            if response.status_code != 200:
                raise CommandError(f"The webhook answered {response.status_code}: {response.content.decode()[:200]}")
            inbound = InboundMessage.objects.filter(mid=mid).first()
            if inbound is None:
                raise CommandError("The webhook did not keep the message.")
            outcome = sender_drain(inbound_id=inbound.id, worker_name="messenger_simulate")

        if outcome == "left-to-holder":
            # A running worker took the sender first (its job was queued by the same webhook call):
            # its answer is the one to show.
            self._wait_until_final(inbound)
        inbound.refresh_from_db()
        parts = list(inbound.parts.order_by("position"))
        if options["json"]:
            self.stdout.write(json.dumps([p.body for p in parts], indent=2, ensure_ascii=False))
            return
        self.stdout.write(f"you> {options['text']}")
        for part in parts:
            for i, line in enumerate(render_part(part.body)):
                self.stdout.write(("bot> " if i == 0 else "     ") + line)
        if not parts:
            reason = f": {inbound.status_reason}" if inbound.status_reason else ""
            self.stdout.write(f"(no reply: {inbound.get_status_display()}{reason})")
        self.stdout.write(self.style.HTTP_INFO(f"[{inbound.status}; intent={inbound.intent or '-'}; dry-run]"))

    def _wait_until_final(self, inbound: InboundMessage) -> None:
        deadline = time.monotonic() + settings.MESSENGER_PROCESSING_TIMEOUT_MS / 1000 + 15
        while time.monotonic() < deadline:
            inbound.refresh_from_db(fields=["status"])
            if inbound.status in InboundMessage.FINAL_STATUSES:
                return
            time.sleep(0.1)
