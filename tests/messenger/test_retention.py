"""Retention: what the prune deletes (and never), in batches, its dry run, the daily job, the index."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rq import SimpleWorker
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry

from conversations.models import Conversation, Message
from messenger.models import InboundMessage, OutboundPart
from messenger.queues import get_queue
from messenger.retention import (
    PRUNE_INTERVAL,
    PRUNE_JOB_ID,
    PruneResult,
    messenger_prune,
    prune_schedule_ensure,
)
from messenger.selectors import inbound_open_for_sender
from observability.models import Event

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ROWS_CUTOFF = NOW - timedelta(days=90)
TALKS_CUTOFF = NOW - timedelta(days=365)
SECOND = timedelta(seconds=1)
PAGE = "1122334455"
_mids = itertools.count(1)


@pytest.fixture(autouse=True)
def retention(settings):
    settings.MESSENGER_RETENTION_DAYS = 90
    settings.CONVERSATIONS_RETENTION_DAYS = 365
    settings.MESSENGER_PRUNE_BATCH_SIZE = 1000


def inbound(*, status=InboundMessage.Status.ANSWERED, finished_at=None, received_at=None, psid="p1", parts=0):
    received_at = received_at or finished_at or NOW
    row = InboundMessage.objects.create(
        mid=f"m_ret_{next(_mids)}",
        page_id=PAGE,
        psid=psid,
        kind=InboundMessage.Kind.TEXT,
        text="hi",
        fb_timestamp=int(received_at.timestamp() * 1000),
        received_at=received_at,
        status=status,
        finished_at=finished_at,
    )
    OutboundPart.objects.bulk_create(
        OutboundPart(inbound=row, position=i, body={"text": f"part {i}"}) for i in range(parts)
    )
    return row


def conversation(*, last: datetime, psid: str = "p1", messages: int = 0) -> Conversation:
    talk = Conversation.objects.create(
        page_id=PAGE,
        psid=psid,
        device_id=f"d-{psid}-{last.timestamp()}",
        status="expired",
        started_at=last,
        last_activity_at=last,
    )
    Message.objects.bulk_create(Message(conversation=talk, direction="in", text="x") for _ in range(messages))
    return talk


def test_prune_deletes_only_what_is_past_retention():
    gone = inbound(finished_at=ROWS_CUTOFF - SECOND, parts=2)
    kept = inbound(finished_at=ROWS_CUTOFF + SECOND, parts=1)
    # No finished_at (should not happen for a final row): its receipt time decides.
    gone_unfinished = inbound(status=InboundMessage.Status.FAILED, received_at=ROWS_CUTOFF - SECOND)
    open_rows = [
        inbound(status=status, received_at=NOW - timedelta(days=400)) for status in InboundMessage.OPEN_STATUSES
    ]
    old_event = Event.objects.create(event_type="response_sent", created_at=ROWS_CUTOFF - SECOND)
    new_event = Event.objects.create(event_type="response_sent", created_at=ROWS_CUTOFF + SECOND)
    old_talk = conversation(last=TALKS_CUTOFF - SECOND, messages=3)
    new_talk = conversation(last=TALKS_CUTOFF + SECOND, psid="p2", messages=2)

    result = messenger_prune(now=NOW)

    assert result == PruneResult(inbound=2, parts=2, events=1, conversations=1, messages=3)
    remaining = set(InboundMessage.objects.values_list("id", flat=True))
    assert remaining == {kept.id, *(row.id for row in open_rows)}
    assert gone.id not in remaining and gone_unfinished.id not in remaining
    assert list(OutboundPart.objects.values_list("inbound_id", flat=True)) == [kept.id]
    assert list(Event.objects.values_list("id", flat=True)) == [new_event.id]
    assert old_event.id != new_event.id
    assert list(Conversation.objects.values_list("id", flat=True)) == [new_talk.id]
    assert Message.objects.filter(conversation=old_talk.id).count() == 0
    assert Message.objects.count() == 2


def test_prune_never_deletes_an_open_row_however_old():
    rows = [inbound(status=status, finished_at=NOW - timedelta(days=999)) for status in InboundMessage.OPEN_STATUSES]
    assert messenger_prune(now=NOW).inbound == 0
    assert InboundMessage.objects.count() == len(rows)


def test_prune_with_zero_days_keeps_everything(settings):
    settings.MESSENGER_RETENTION_DAYS = 0
    settings.CONVERSATIONS_RETENTION_DAYS = 0
    inbound(finished_at=NOW - timedelta(days=5000))
    Event.objects.create(event_type="response_sent", created_at=NOW - timedelta(days=5000))
    conversation(last=NOW - timedelta(days=5000))
    assert messenger_prune(now=NOW) == PruneResult()
    assert (InboundMessage.objects.count(), Event.objects.count(), Conversation.objects.count()) == (1, 1, 1)


def _deletes_from(queries, table: str) -> int:
    """How many captured statements are a DELETE from ``table``."""
    prefix = "DELETE FROM "
    return sum(1 for q in queries if q["sql"].startswith(prefix) and q["sql"][len(prefix) :].startswith(f'"{table}"'))


@pytest.mark.parametrize(("rows", "batch"), [(7, 3), (6, 3), (1, 1000)])
def test_prune_deletes_in_batches_of_the_batch_size(rows, batch):
    for _ in range(rows):
        inbound(finished_at=ROWS_CUTOFF - SECOND, parts=1)
        Event.objects.create(event_type="response_sent", created_at=ROWS_CUTOFF - SECOND)
    talk = conversation(last=TALKS_CUTOFF - SECOND, messages=rows)

    with CaptureQueriesContext(connection) as captured:
        result = messenger_prune(now=NOW, batch_size=batch)

    batches = math.ceil(rows / batch)
    assert result == PruneResult(inbound=rows, parts=rows, events=rows, conversations=1, messages=rows)
    assert _deletes_from(captured.captured_queries, "messenger_inboundmessage") == batches
    assert _deletes_from(captured.captured_queries, "messenger_outboundpart") == batches
    assert _deletes_from(captured.captured_queries, "observability_event") == batches
    # Messages in their own batches; the conversation's own delete then finds none left.
    assert _deletes_from(captured.captured_queries, "conversations_message") == batches + 1
    assert not Conversation.objects.filter(id=talk.id).exists()


def test_prune_dry_run_deletes_nothing_and_counts():
    inbound(finished_at=ROWS_CUTOFF - SECOND, parts=3)
    inbound(finished_at=ROWS_CUTOFF - SECOND)
    Event.objects.create(event_type="response_sent", created_at=ROWS_CUTOFF - SECOND)
    conversation(last=TALKS_CUTOFF - SECOND, messages=4)

    with CaptureQueriesContext(connection) as captured:
        result = messenger_prune(now=NOW, dry_run=True)

    assert result == PruneResult(inbound=2, parts=3, events=1, conversations=1, messages=4)
    assert not any(query["sql"].startswith("DELETE") for query in captured.captured_queries)
    assert (InboundMessage.objects.count(), OutboundPart.objects.count(), Event.objects.count()) == (2, 3, 1)
    assert (Conversation.objects.count(), Message.objects.count()) == (1, 4)


# --- the daily job, on the real Redis ------------------------------------------------------------------


def _scheduled_ids(queue) -> list[str]:
    key = ScheduledJobRegistry(queue=queue).key
    return [raw.decode() for raw in queue.connection.zrange(key, 0, -1)]


def test_prune_schedule_ensure_schedules_once_at_the_next_quiet_hour():
    queue = get_queue("messenger_slow")
    assert prune_schedule_ensure(now=NOW) is True
    assert prune_schedule_ensure(now=NOW) is False
    assert _scheduled_ids(queue) == [PRUNE_JOB_ID]
    key = ScheduledJobRegistry(queue=queue).key
    run_at = queue.connection.zscore(key, PRUNE_JOB_ID)
    assert run_at == datetime(2026, 6, 2, 3, 0, tzinfo=UTC).timestamp()


def test_daily_prune_job_reschedules_itself_exactly_once():
    queue = get_queue("messenger_slow")
    inbound(finished_at=datetime.now(UTC) - timedelta(days=91))
    prune_schedule_ensure()
    # Make it due now, as rq's scheduler would at 03:00, and run it the way a worker does.
    job = Job.fetch(PRUNE_JOB_ID, connection=queue.connection)
    ScheduledJobRegistry(queue=queue).remove(job)
    queue._enqueue_job(job)
    before = datetime.now(UTC)
    SimpleWorker([queue], connection=queue.connection).work(burst=True)

    assert InboundMessage.objects.count() == 0
    assert _scheduled_ids(queue) == [PRUNE_JOB_ID]
    job = Job.fetch(PRUNE_JOB_ID, connection=queue.connection)
    assert job.get_status() == JobStatus.SCHEDULED
    assert queue.connection.ttl(job.key) == -1  # the finished run did not expire its successor
    run_at = queue.connection.zscore(ScheduledJobRegistry(queue=queue).key, PRUNE_JOB_ID)
    expected = (before + PRUNE_INTERVAL).timestamp()
    assert expected - 5 <= run_at <= expected + 60
    assert prune_schedule_ensure() is False
    assert _scheduled_ids(queue) == [PRUNE_JOB_ID]


def test_prune_schedule_ensure_never_raises(monkeypatch):
    import messenger.retention as retention_module

    def broken(name):
        raise ConnectionError("redis down")

    monkeypatch.setattr(retention_module, "get_queue", broken)
    assert prune_schedule_ensure() is False


# --- the drain's index ------------------------------------------------------------------------------


def test_open_rows_query_uses_the_partial_index():
    for status in (InboundMessage.Status.ANSWERED, InboundMessage.Status.QUEUED):
        inbound(status=status, psid="p9")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = inbound_open_for_sender(page_id=PAGE, psid="p9")[:1].explain()
        # The pipeline's shape today (exclude the final statuses) cannot prove the index's predicate.
        final = [s for s in InboundMessage.Status if s not in InboundMessage.OPEN_STATUSES]
        old_plan = (
            InboundMessage.objects.filter(page_id=PAGE, psid="p9")
            .exclude(status__in=final)
            .order_by("fb_timestamp", "id")[:1]
            .explain()
        )
    assert "inbound_sender_open_idx" in plan
    assert "inbound_sender_open_idx" not in old_plan
    assert inbound_open_for_sender(page_id=PAGE, psid="p9").first().status == InboundMessage.Status.QUEUED
