"""``messenger_prune``: the exact counts it prints, and a dry run that deletes nothing."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from messenger.models import InboundMessage, OutboundPart
from observability.models import Event

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def retention(settings):
    settings.MESSENGER_RETENTION_DAYS = 90
    settings.CONVERSATIONS_RETENTION_DAYS = 365


def old_rows(count: int) -> None:
    finished = timezone.now() - timedelta(days=91)
    for number in range(count):
        row = InboundMessage.objects.create(
            mid=f"m_prune_cmd_{number}",
            page_id="1",
            psid="p",
            kind="text",
            fb_timestamp=number,
            received_at=finished,
            finished_at=finished,
            status=InboundMessage.Status.ANSWERED,
        )
        OutboundPart.objects.create(inbound=row, position=0, body={"text": "hi"})
    Event.objects.create(event_type="response_sent", created_at=finished)


def run(*args: str) -> str:
    out = StringIO()
    call_command("messenger_prune", *args, stdout=out)
    return out.getvalue()


def test_prune_command_dry_run_prints_counts_and_deletes_nothing():
    old_rows(3)
    out = run("--dry-run")
    assert out.splitlines() == [
        "retention: 90 days for inbound rows and events, 365 days for conversations (0 = kept for ever)",
        "would delete 3 inbound",
        "would delete 3 parts",
        "would delete 1 events",
        "would delete 0 conversations",
        "would delete 0 messages",
    ]
    assert (InboundMessage.objects.count(), OutboundPart.objects.count(), Event.objects.count()) == (3, 3, 1)


def test_prune_command_deletes_and_prints_the_exact_counts():
    old_rows(3)
    out = run("--batch-size", "2")
    assert out.splitlines()[1:] == [
        "deleted 3 inbound",
        "deleted 3 parts",
        "deleted 1 events",
        "deleted 0 conversations",
        "deleted 0 messages",
    ]
    assert (InboundMessage.objects.count(), OutboundPart.objects.count(), Event.objects.count()) == (0, 0, 0)
