"""Tests for messenger/selectors.py: which of a sender's messages comes next."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from messenger.models import InboundMessage
from messenger.selectors import WAITING, inbound_get, inbound_next_for_sender, inbound_parts
from messenger.services import outbound_part_create_many

pytestmark = pytest.mark.django_db
Status = InboundMessage.Status


def make(mid: str, ts: int, status: str = Status.QUEUED, psid: str = "u", **fields) -> InboundMessage:
    return InboundMessage.objects.create(
        mid=mid, page_id="p", psid=psid, kind="text", fb_timestamp=ts, status=status, **fields
    )


def test_next_for_sender_is_the_earliest_open_message_by_timestamp():
    """Final messages are skipped; the earliest open one by Facebook's timestamp comes first."""
    make("m_done", 1, Status.ANSWERED)
    later = make("m_later", 3)
    earlier = make("m_earlier", 2)
    make("m_other_user", 0, psid="v")
    assert inbound_next_for_sender(inbound=later) == earlier


def test_next_for_sender_waits_behind_a_message_parked_until_later():
    """A parked head keeps the order: everything behind it waits, until its time has come."""
    parked = make("m_parked", 1, Status.DEFERRED, not_before=timezone.now() + timedelta(minutes=1))
    behind = make("m_behind", 2)
    assert inbound_next_for_sender(inbound=behind) == WAITING
    InboundMessage.objects.filter(id=parked.id).update(not_before=timezone.now() - timedelta(seconds=1))
    assert inbound_next_for_sender(inbound=behind) == parked


def test_next_for_sender_is_none_when_all_are_final():
    """Nothing left to answer for this sender."""
    row = make("m_1", 1, Status.FAILED)
    assert inbound_next_for_sender(inbound=row) is None


def test_inbound_get_and_parts_in_order():
    """A missing id gives None; parts come back in position order."""
    row = make("m_1", 1)
    assert inbound_get(inbound_id=row.id) == row
    assert inbound_get(inbound_id=row.id + 1000) is None
    assert inbound_parts(inbound=row) == []
    outbound_part_create_many(inbound=row, bodies=[{"text": "a"}, {"text": "b"}], intent="x", confidence=None)
    assert [p.position for p in inbound_parts(inbound=row)] == [0, 1]
