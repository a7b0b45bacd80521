"""Tests for messenger/services.py: every row write of the pipeline, on the row and on the instance."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from messenger.models import InboundMessage, OutboundPart
from messenger.services import (
    LEASE_LOST,
    inbound_finish,
    inbound_park,
    inbound_start,
    outbound_part_begin_send,
    outbound_part_create_many,
    outbound_part_mark_failed,
    outbound_part_mark_sent,
    outbound_part_record_error,
)

pytestmark = pytest.mark.django_db
Status = InboundMessage.Status


@pytest.fixture
def inbound() -> InboundMessage:
    return InboundMessage.objects.create(
        mid="m_svc", page_id="p", psid="u", kind="text", fb_timestamp=1, status=Status.QUEUED,
        not_before=timezone.now(),
    )


def test_inbound_start_counts_the_attempt_and_clears_the_park(inbound):
    """Processing starts: one more attempt, the worker named, no longer parked."""
    inbound_start(inbound=inbound, worker_name="w" * 300)
    row = InboundMessage.objects.get(id=inbound.id)
    assert (row.status, row.attempts, row.not_before) == (Status.PROCESSING, 1, None)
    assert row.worker_name == "w" * 255 and row.processing_started_at is not None
    assert inbound.attempts == 1


def test_inbound_finish_final_status_stamps_finished_at_and_logs(inbound, caplog):
    """A final outcome is written with its reason and time, on the row and the instance, and logged."""
    with caplog.at_level(logging.INFO, logger="messenger.pipeline"):
        status = inbound_finish(inbound=inbound, status=Status.NO_REPLY, reason="r" * 300, conversation_id=None)
    row = InboundMessage.objects.get(id=inbound.id)
    assert status == Status.NO_REPLY
    assert (row.status, row.status_reason) == (Status.NO_REPLY, "r" * 255)
    assert row.finished_at is not None and inbound.finished_at == row.finished_at
    assert [r.getMessage() for r in caplog.records] == ["messenger.pipeline.no-reply"]


def test_inbound_park_defers_without_finishing(inbound, caplog):
    """A parked message is deferred until not_before, not finished, and logged as a warning."""
    later = timezone.now() + timedelta(seconds=30)
    with caplog.at_level(logging.INFO, logger="messenger.pipeline"):
        inbound_park(inbound=inbound, not_before=later, reason="circuit open")
    row = InboundMessage.objects.get(id=inbound.id)
    assert (row.status, row.not_before, row.finished_at) == (Status.DEFERRED, later, None)
    [record] = caplog.records
    assert (record.getMessage(), record.levelno) == ("messenger.pipeline.deferred", logging.WARNING)


def test_outbound_part_create_many_records_parts_and_the_reply_together(inbound):
    """The parts, in order, and the reply's intent and confidence are stored in one go."""
    parts = outbound_part_create_many(inbound=inbound, bodies=[{"text": "a"}, {"text": "b"}], intent="i" * 70,
                                      confidence=0.5)
    assert [(p.position, p.body, p.status) for p in OutboundPart.objects.order_by("position")] == [
        (0, {"text": "a"}, OutboundPart.Status.PENDING),
        (1, {"text": "b"}, OutboundPart.Status.PENDING),
    ]
    assert len(parts) == 2
    row = InboundMessage.objects.get(id=inbound.id)
    assert (row.intent, row.confidence) == ("i" * 64, 0.5)
    assert inbound.intent == "i" * 64


def test_outbound_part_mark_sent_clears_a_previous_error(inbound):
    """A part sent after a failed try keeps Facebook's id and loses the old error."""
    [part] = outbound_part_create_many(inbound=inbound, bodies=[{"text": "a"}], intent="x", confidence=None)
    outbound_part_record_error(part=part, error_kind="transient", error_code=2)
    outbound_part_mark_sent(part=part, message_id="m_fb")
    part.refresh_from_db()
    assert (part.status, part.fb_message_id, part.error_kind, part.error_code) == (
        OutboundPart.Status.SENT, "m_fb", "", None
    )
    assert part.sent_at is not None


def test_outbound_part_record_error_then_mark_failed(inbound):
    """An error alone leaves the part pending (to be tried again); marking it failed ends it."""
    [part] = outbound_part_create_many(inbound=inbound, bodies=[{"text": "a"}], intent="x", confidence=None)
    outbound_part_record_error(part=part, error_kind="invalid_request", error_code=100)
    part.refresh_from_db()
    assert (part.status, part.error_kind, part.error_code) == (OutboundPart.Status.PENDING, "invalid_request", 100)
    assert outbound_part_mark_failed(part=part, fence=inbound.fence)
    part.refresh_from_db()
    assert part.status == OutboundPart.Status.FAILED


def test_part_refused_for_an_overtaken_worker_is_left_to_the_new_holder(inbound):
    """A worker overtaken mid-send can't mark the part failed: the holder now sends it."""
    old = InboundMessage.objects.get(id=inbound.id)
    assert inbound_start(inbound=old, worker_name="old")
    [part] = outbound_part_create_many(inbound=old, bodies=[{"text": "a"}], intent="x", confidence=None)
    new = InboundMessage.objects.get(id=inbound.id)
    assert inbound_start(inbound=new, worker_name="new")

    assert not outbound_part_mark_failed(part=part, fence=old.fence)
    assert OutboundPart.objects.get(id=part.id).status == OutboundPart.Status.PENDING


def test_claim_succeeds_for_one_worker_only(inbound):
    """Two workers that read the same row: the first claim bumps the fence, the second is refused."""
    first = InboundMessage.objects.get(id=inbound.id)
    second = InboundMessage.objects.get(id=inbound.id)
    assert inbound_start(inbound=first, worker_name="w1")
    assert not inbound_start(inbound=second, worker_name="w2")
    inbound.refresh_from_db()
    assert (inbound.fence, inbound.worker_name, inbound.attempts) == (first.fence, "w1", 1)


def test_part_send_is_fenced_off_for_a_worker_whose_claim_was_overtaken(inbound):
    """A worker whose message was claimed again since (it lost its lease) can't start sending a part;
    the new holder can, once; nobody can send a part already sending."""
    old = InboundMessage.objects.get(id=inbound.id)
    assert inbound_start(inbound=old, worker_name="old")
    [part] = outbound_part_create_many(inbound=old, bodies=[{"text": "one"}], intent="x", confidence=None)
    new = InboundMessage.objects.get(id=inbound.id)
    assert inbound_start(inbound=new, worker_name="new")

    assert not outbound_part_begin_send(part=OutboundPart.objects.get(id=part.id), fence=old.fence)
    assert outbound_part_begin_send(part=OutboundPart.objects.get(id=part.id), fence=new.fence)
    assert not outbound_part_begin_send(part=OutboundPart.objects.get(id=part.id), fence=new.fence)
    part.refresh_from_db()
    assert (part.status, part.attempts) == (OutboundPart.Status.SENDING, 1)
    assert part.send_started_at is not None and part.token.startswith("cb1.")


def test_outcome_of_a_worker_whose_claim_was_overtaken_is_not_written(inbound):
    """The old holder's crash or failure can't overwrite the row the new holder is answering."""
    old = InboundMessage.objects.get(id=inbound.id)
    assert inbound_start(inbound=old, worker_name="old")
    new = InboundMessage.objects.get(id=inbound.id)
    assert inbound_start(inbound=new, worker_name="new")

    assert inbound_finish(inbound=old, status=Status.FAILED, reason="error: IntegrityError") == LEASE_LOST
    assert inbound_park(inbound=old, not_before=timezone.now(), reason="retry") == LEASE_LOST
    row = InboundMessage.objects.get(id=inbound.id)
    assert (row.status, row.status_reason, row.worker_name) == (Status.PROCESSING, "", "new")
    assert inbound_finish(inbound=new, status=Status.ANSWERED) == Status.ANSWERED


def test_parts_of_a_worker_whose_claim_was_overtaken_are_not_recorded(inbound):
    """Two workers decided a reply for one message (the first lost its lease midway): only the holder's
    parts are recorded, and the old holder is told, not crashed by a duplicate key."""
    old = InboundMessage.objects.get(id=inbound.id)
    assert inbound_start(inbound=old, worker_name="old")
    new = InboundMessage.objects.get(id=inbound.id)
    assert inbound_start(inbound=new, worker_name="new")
    assert len(outbound_part_create_many(inbound=new, bodies=[{"text": "new"}], intent="n", confidence=None)) == 1

    assert outbound_part_create_many(inbound=old, bodies=[{"text": "old"}], intent="o", confidence=None) is None
    assert list(OutboundPart.objects.filter(inbound_id=inbound.id).values_list("body", flat=True)) == [{"text": "new"}]
    assert InboundMessage.objects.get(id=inbound.id).intent == "n"


def test_claim_of_a_final_row_is_refused(inbound):
    """A message answered meanwhile is never claimed again."""
    InboundMessage.objects.filter(id=inbound.id).update(status=Status.ANSWERED)
    assert not inbound_start(inbound=inbound, worker_name="w")
