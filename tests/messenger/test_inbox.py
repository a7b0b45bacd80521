"""The durable inbox when Redis is down, and ``messenger_requeue`` putting messages back."""

from __future__ import annotations

import copy

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

from messenger.inbox import current_job_id, inbox_requeue
from messenger.models import InboundMessage
from messenger.queues import get_queue
from tests.messenger.helpers import text_body

pytestmark = pytest.mark.django_db


def dead_queues():
    queues = copy.deepcopy(settings.RQ_QUEUES)
    for config in queues.values():
        config["URL"] = "redis://127.0.0.1:1/15"  # nothing listens on port 1
    return queues


def test_redis_down_webhook_still_answers_and_keeps_row_pending(post_webhook):
    """Redis refusing the job: the webhook answers 200 and the row stays pending with the reason."""
    with override_settings(RQ_QUEUES=dead_queues()):
        response = post_webhook("text_message")
    assert response.status_code == 200
    row = InboundMessage.objects.get()
    assert row.status == InboundMessage.Status.PENDING
    assert row.status_reason == "queue unavailable when received"
    assert get_queue("messenger_fast").count == 0


def test_requeue_enqueues_pending_row_once_redis_is_back(post_webhook, capsys):
    """messenger_requeue queues the pending row once Redis is back, and a second run queues nothing more."""
    with override_settings(RQ_QUEUES=dead_queues()):
        post_webhook("text_message")
    call_command("messenger_requeue", "--min-age", "0")
    assert "requeued=1" in capsys.readouterr().out
    row = InboundMessage.objects.get()
    assert row.status == InboundMessage.Status.QUEUED
    assert get_queue("messenger_fast").get_job_ids() == [row.job_id]
    call_command("messenger_requeue", "--min-age", "0")
    assert "requeued=0 already_queued=1" in capsys.readouterr().out
    assert get_queue("messenger_fast").count == 1


def test_requeue_leaves_young_rows_alone(post_webhook):
    """A row younger than min_age may still be on its way to the queue: it is not requeued."""
    with override_settings(RQ_QUEUES=dead_queues()):
        post_webhook("text_message")
    assert inbox_requeue().requeued == []


def test_requeue_finds_queued_row_whose_job_vanished(post_webhook, redis_conn):
    """A row marked queued whose job Redis lost (a restart) is queued again."""
    post_webhook("text_message")
    redis_conn.flushdb()
    from datetime import timedelta

    result = inbox_requeue(min_age=timedelta(0))
    assert result.requeued == [InboundMessage.objects.get().id]


def test_requeue_finds_row_whose_job_a_dead_worker_took_off_its_queue(post_webhook):
    """A worker popped the job and was killed before starting it: rq still says queued, but the job is
    on no queue. The sweep queues the message again (once); a job still on its queue is left alone."""
    from datetime import timedelta

    post_webhook(text_body("popped", mid="m_popped", psid="71"))
    post_webhook(text_body("waiting", mid="m_waiting", psid="72"))
    popped = InboundMessage.objects.get(mid="m_popped")
    queue = get_queue("messenger_fast")
    assert queue.connection.lrem(queue.key, 0, current_job_id(popped)) == 1  # BLPOP, then the worker dies

    result = inbox_requeue(min_age=timedelta(0))
    assert result.requeued == [popped.id]
    assert result.skipped_alive == 1
    popped.refresh_from_db()
    assert current_job_id(popped) in queue.get_job_ids() and len(queue.get_job_ids()) == 2
    assert inbox_requeue(min_age=timedelta(0)).requeued == []


def test_requeue_command_reports_redis_down():
    """With Redis down the command fails with a clear message instead of a traceback."""
    from django.core.management.base import CommandError

    InboundMessage.objects.create(mid="m1", page_id="p", psid="u", kind="text", fb_timestamp=1,
                                  status=InboundMessage.Status.PENDING,
                                  received_at="2020-01-01T00:00:00Z")
    with override_settings(RQ_QUEUES=dead_queues()), pytest.raises(CommandError, match="Redis is not reachable"):
        call_command("messenger_requeue")


def test_requeue_leaves_messages_behind_a_parked_one_to_its_job(post_webhook):
    """A sender whose earliest message is deferred until later: the messages behind it are not requeued."""
    from datetime import timedelta

    from django.utils import timezone

    from messenger.inbox import inbox_schedule_retry

    parked = InboundMessage.objects.create(
        mid="m_parked", page_id="p", psid="u", kind="text", fb_timestamp=1, status=InboundMessage.Status.DEFERRED,
        not_before=timezone.now() + timedelta(minutes=5), received_at=timezone.now() - timedelta(minutes=1),
        queue_name="messenger_fast",
    )
    inbox_schedule_retry(inbound=parked, delay_ms=300_000)
    behind = InboundMessage.objects.create(
        mid="m_behind", page_id="p", psid="u", kind="text", fb_timestamp=2, status=InboundMessage.Status.QUEUED,
        received_at=timezone.now() - timedelta(minutes=1), queue_name="messenger_fast",
    )
    result = inbox_requeue(min_age=timedelta(0))
    assert result.requeued == []
    assert result.skipped_alive == 2
    behind.refresh_from_db()
    assert behind.status == InboundMessage.Status.QUEUED


def _open_row(mid: str, *, psid: str, status: str, **fields) -> InboundMessage:
    from datetime import timedelta

    from django.utils import timezone

    return InboundMessage.objects.create(
        mid=mid, page_id="p", psid=psid, kind="text", fb_timestamp=1, status=status,
        received_at=timezone.now() - timedelta(minutes=1), queue_name="messenger_fast", **fields,
    )


def test_sweep_looks_past_the_first_limit_rows(post_webhook):
    """More open rows with live jobs than one query's limit: the stranded row behind them is still found."""
    from datetime import timedelta

    from messenger.inbox import _enqueue_one

    alive = [_open_row(f"m_alive_{i}", psid=f"u{i}", status=InboundMessage.Status.QUEUED) for i in range(3)]
    for row in alive:
        _enqueue_one(row)
    stranded = _open_row("m_stranded", psid="u9", status=InboundMessage.Status.PENDING)

    result = inbox_requeue(min_age=timedelta(0), limit=2)

    assert result.requeued == [stranded.id]
    assert result.skipped_alive == 3


def test_deferred_message_whose_scheduled_job_never_ran_is_requeued(post_webhook):
    """Parked until a time long past, its job still waiting on rq's schedule (no scheduler alive):
    the sweep queues it now instead of leaving it stuck."""
    from datetime import timedelta

    from django.utils import timezone

    from messenger.inbox import inbox_schedule_retry

    row = _open_row(
        "m_overdue", psid="u", status=InboundMessage.Status.DEFERRED, not_before=timezone.now() - timedelta(minutes=2)
    )
    inbox_schedule_retry(inbound=row, delay_ms=-120_000)  # scheduled in the past: no scheduler ran it
    queue = get_queue("messenger_fast")
    assert queue.scheduled_job_registry.get_job_ids() == [row.job_id]

    result = inbox_requeue(min_age=timedelta(seconds=10))

    row.refresh_from_db()
    assert result.requeued == [row.id]
    assert row.status == InboundMessage.Status.QUEUED
    assert queue.get_job_ids() == [row.job_id]


def test_deferred_message_due_just_now_keeps_its_scheduled_job(post_webhook):
    """A scheduled job whose time has only just come is left to the scheduler (no double run)."""
    from datetime import timedelta

    from django.utils import timezone

    from messenger.inbox import inbox_schedule_retry

    row = _open_row(
        "m_due", psid="u", status=InboundMessage.Status.DEFERRED, not_before=timezone.now() - timedelta(seconds=1)
    )
    inbox_schedule_retry(inbound=row, delay_ms=-1000)
    result = inbox_requeue(min_age=timedelta(seconds=10))
    assert result.requeued == [] and result.skipped_alive == 1
