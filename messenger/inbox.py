"""The durable inbox: keep every actionable event before answering Facebook, then queue its job.

``inbox_keep_events`` writes the rows (unique on Facebook's message id, so a redelivery is a no-op)
and their observability events in one statement; ``inbox_enqueue`` puts their jobs on the queue the
routing rule picks, after the commit, in one Redis round trip. Items the parser could not read are
kept too, raw, with the final status ``unreadable`` and the problem as reason: nothing signed is
dropped, and they never reach a queue.
If Redis can't take a job the row stays ``pending`` and ``inbox_requeue`` (run by
``manage.py messenger_requeue`` and by every worker's recovery sweep) puts it back later. A row is
therefore never lost: it is answered, or it says why not, or it is waiting to be queued again.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from messenger.inbox_insert import inbox_insert
from messenger.models import InboundMessage
from messenger.ordering import inflight_alive, sender_lock_held
from messenger.parsing import EventKind, MessagingEvent
from messenger.queues import channel_redis, get_queue, ingress_queue
from messenger.routing import route_for
from observability.hashing import hash_psid
from observability.models import Event
from observability.services import event_build

logger = logging.getLogger("messenger.inbox")

JOB_FUNCTION = "messenger.jobs.process_inbound"

_WAITING_JOB_STATUSES = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def job_id_for(inbound_id: int) -> str:
    """One rq job id per inbound message: re-enqueueing replaces the job instead of adding one."""
    return f"inbound-{inbound_id}"


@dataclass
class KeepResult:
    kept: list[InboundMessage] = field(default_factory=list)  # new rows to answer (queue their jobs)
    unreadable: list[InboundMessage] = field(default_factory=list)  # new rows kept raw, final
    duplicates: int = 0
    ignored: Counter = field(default_factory=Counter)


def _kind_of(event: MessagingEvent) -> str:
    if event.kind is EventKind.POSTBACK:
        return InboundMessage.Kind.POSTBACK
    if event.attachments:
        return InboundMessage.Kind.ATTACHMENTS
    if event.is_quick_reply:
        return InboundMessage.Kind.QUICK_REPLY
    return InboundMessage.Kind.TEXT


def _unreadable_row_for(event: MessagingEvent, received_at: datetime) -> InboundMessage:
    return InboundMessage(
        mid=event.mid,
        page_id=event.page_id[:64],
        psid=event.sender_id[:64],
        kind=InboundMessage.Kind.UNREADABLE,
        raw=event.raw,
        fb_timestamp=event.timestamp,
        received_at=received_at,
        finished_at=received_at,
        status=InboundMessage.Status.UNREADABLE,
        status_reason=event.problem,
    )


def _row_for(event: MessagingEvent, received_at: datetime) -> InboundMessage:
    if event.unreadable:
        return _unreadable_row_for(event, received_at)
    kind = _kind_of(event)
    route = route_for(kind=kind, text=event.text, has_attachments=bool(event.attachments))
    return InboundMessage(
        mid=event.mid,
        page_id=event.page_id,
        psid=event.sender_id,
        kind=kind,
        text=event.text,
        payload=event.payload,
        title=event.title[:255],
        attachments=[a.to_dict() for a in event.attachments],
        raw=dict(event.raw),
        fb_timestamp=event.timestamp,
        received_at=received_at,
        status=InboundMessage.Status.QUEUED,
        queue_name=route.queue,
    )


def _event_for(row: InboundMessage) -> Event:
    """The observability event kept with ``row``: ``message_received``, or ``message_unreadable``."""
    if row.status == InboundMessage.Status.UNREADABLE:
        return event_build(event_type=Event.Type.MESSAGE_UNREADABLE, inbound=row,
                           detail={"reason": row.status_reason})
    return event_build(event_type=Event.Type.MESSAGE_RECEIVED, inbound=row, detail={"kind": row.kind})


def inbox_keep_events(
    *, events: Sequence[MessagingEvent], received_at: datetime | None = None, started: float | None = None
) -> KeepResult:
    """Store every actionable and every unreadable event of one webhook body; duplicates (redeliveries)
    are counted, not stored.

    ``events`` come from :func:`messenger.parsing.parse_webhook`, each sender's in timestamp order, so
    row ids ascend in that order too. The new rows and their events (``message_received``; for an
    unreadable row ``message_unreadable``) are written by one autocommitted statement
    (:func:`messenger.inbox_insert.inbox_insert`): a redelivered mid is skipped there, without an
    error. ``started`` (``time.perf_counter()`` at request start) gives ``message_received`` its
    latency. Unreadable rows (final, never queued) come back in ``unreadable``.
    """
    received_at = received_at or timezone.now()
    result = KeepResult()
    candidates: list[MessagingEvent] = []
    seen: set[str] = set()
    for event in events:
        ignorable = not event.actionable or not event.sender_id or event.sender_id == event.page_id
        if ignorable and not event.unreadable:
            result.ignored[event.kind.value] += 1
            continue
        if event.mid in seen:
            result.duplicates += 1
            continue
        seen.add(event.mid)
        candidates.append(event)
    if not candidates:
        return result

    rows = [_row_for(e, received_at) for e in candidates]
    # The request's start on the wall clock: the event's latency is measured by the statement itself.
    since = received_at - timedelta(seconds=time.perf_counter() - started) if started is not None else None
    events = [_event_for(row) for row in rows]
    inserted = inbox_insert(rows=rows, events=events, since=[
        None if row.status == InboundMessage.Status.UNREADABLE else since for row in rows
    ])
    result.duplicates += len(rows) - len(inserted)
    result.unreadable = [row for row in inserted if row.status == InboundMessage.Status.UNREADABLE]
    result.kept = [row for row in inserted if row.status != InboundMessage.Status.UNREADABLE]
    for row in result.unreadable:
        logger.warning(
            "messenger.inbox.unreadable",
            extra={"mid": row.mid, "psid_hash": hash_psid(row.psid), "reason": row.status_reason},
        )
    for row in result.kept:
        logger.info(
            "messenger.inbox.kept",
            extra={
                "mid": row.mid,
                "psid_hash": hash_psid(row.psid),
                "kind": row.kind,
                "queue": row.queue_name,
            },
        )
    return result


def current_job_id(row: InboundMessage) -> str:
    return row.job_id or job_id_for(row.id)


def _enqueue_one(
    row: InboundMessage, *, at: datetime | None = None, fresh: bool = False, ingress: bool = False,
    pipeline: redis.client.Pipeline | None = None,
) -> None:
    """Queue (or schedule ``at``) the row's job; ``fresh`` gives it a new job id, recorded on the row.

    ``ingress``: on the webhook's short-timeout, no-retry client (:func:`messenger.queues.ingress_queue`).
    ``pipeline``: only add the job's commands to it (a pipeline of that queue's client), the caller
    executes it.
    """
    route = route_for(kind=row.kind, text=row.text, has_attachments=bool(row.attachments))
    queue = ingress_queue(route.queue) if ingress else get_queue(route.queue)
    job_id = job_id_for(row.id)
    if fresh:
        job_id = f"{job_id}-{secrets.token_hex(4)}"
        InboundMessage.objects.filter(id=row.id).update(job_id=job_id)
        row.job_id = job_id
    options = {
        "job_id": job_id,
        "job_timeout": route.job_timeout,
        "result_ttl": 600,
        "failure_ttl": 7 * 24 * 3600,
        "description": f"messenger inbound {row.id} ({route.reason})",
    }
    if at is None:
        queue.enqueue(JOB_FUNCTION, row.id, pipeline=pipeline, **options)
    else:
        queue.enqueue_at(at, JOB_FUNCTION, row.id, **options)


def inbox_enqueue(
    *, rows: Iterable[InboundMessage], on_pipeline: Callable[[redis.client.Pipeline], object] | None = None
) -> tuple[int, int]:
    """Queue the job of each row (already committed). Returns ``(queued, left_pending)``.

    All the jobs go in one Redis transaction (``MULTI``/``EXEC``, one round trip whatever the body
    holds): they are all queued or, when Redis would not take them, none is, and every row is set
    back to ``pending`` with the reason, for ``messenger_requeue`` and the workers' recovery sweep; the
    caller still answers 200. The webhook must answer Facebook fast whatever Redis does, so the
    enqueue uses the ingress client (a socket timeout of ``MESSENGER_INGRESS_REDIS_TIMEOUT_MS``, no
    retry): a hung Redis costs one timeout per request, not one per row. ``on_pipeline`` may add
    commands of its own to that transaction before it is sent (the webhook's answer counter), so they
    cost no round trip either; they are sent only when there are rows.
    """
    rows = list(rows)
    if not rows:
        return 0, 0
    try:
        # Both queues live on one Redis (messenger.queues), so one pipeline carries every job.
        pipeline = ingress_queue(settings.MESSENGER_FAST_QUEUE).connection.pipeline()
        for row in rows:
            _enqueue_one(row, ingress=True, pipeline=pipeline)
        if on_pipeline is not None:
            on_pipeline(pipeline)
        pipeline.execute()
    except redis.RedisError as exc:
        logger.error(
            "messenger.inbox.enqueue-failed",
            extra={"mid": rows[0].mid, "psid_hash": hash_psid(rows[0].psid), "rows": len(rows),
                   "error": type(exc).__name__},
        )
        InboundMessage.objects.filter(
            id__in=[row.id for row in rows], status=InboundMessage.Status.QUEUED
        ).update(status=InboundMessage.Status.PENDING, status_reason="queue unavailable when received")
        return 0, len(rows)
    return len(rows), 0


def inbox_schedule_retry(*, inbound: InboundMessage, delay_ms: int) -> None:
    """Run this message's job again in ``delay_ms`` (rq's scheduler, ``--with-scheduler``)."""
    _enqueue_one(inbound, at=timezone.now() + timedelta(milliseconds=delay_ms), fresh=True)


def inbox_requeue_one(*, inbound: InboundMessage, fence: int | None = None) -> bool:
    """Queue a fresh job for one open message (a drain handing on, a worker putting its message back).

    With ``fence``, only if the row still carries it: a worker that lost its lease puts back only a
    message nobody claimed since. Returns whether a job was queued.
    """
    rows = InboundMessage.objects.filter(id=inbound.id).exclude(status__in=InboundMessage.FINAL_STATUSES)
    if fence is not None:
        rows = rows.filter(fence=fence)
    updated = rows.update(status=InboundMessage.Status.QUEUED, worker_name="")
    if fence is not None and not updated:
        return False
    _enqueue_one(inbound, fresh=True)
    return True


class _QueuedJobs:
    """The job ids on each rq queue, read once per sweep (one LRANGE a queue, not a scan a row)."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection
        self._ids: dict[str, set[str]] = {}

    def holds(self, job: Job) -> bool:
        ids = self._ids.get(job.origin)
        if ids is None:
            queue = get_queue(job.origin)
            keys = (queue.key, queue.intermediate_queue_key)
            ids = {raw.decode() for key in keys for raw in self.connection.lrange(key, 0, -1)}
            self._ids[job.origin] = ids
        return job.id in ids


def _job_alive(
    row: InboundMessage,
    connection: redis.Redis,
    *,
    overdue_before: datetime | None = None,
    queued: _QueuedJobs | None = None,
) -> bool:
    """Is a job still going to answer this row? Waiting on a queue or schedule, or started by a worker
    that still holds the sender (a started job whose worker died holds nothing: rq would only notice
    after the job's timeout). A job still *scheduled* for a deferred row whose time passed before
    ``overdue_before`` is not: no scheduler is running it. Nor is a job *queued* in rq's books that is
    on no queue (``queued``): a worker took it off and died before starting it."""
    try:
        job = Job.fetch(current_job_id(row), connection=connection)
        status = job.get_status(refresh=False)
    except NoSuchJobError:
        return False
    if status == JobStatus.QUEUED and queued is not None and not queued.holds(job):
        return False
    if (
        status == JobStatus.SCHEDULED
        and overdue_before is not None
        and row.status == InboundMessage.Status.DEFERRED
        and row.not_before is not None
        and row.not_before < overdue_before
    ):
        return False
    if status in _WAITING_JOB_STATUSES:
        return True
    if status == JobStatus.STARTED:
        return sender_lock_held(page_id=row.page_id, psid=row.psid)
    return False


@dataclass
class RequeueResult:
    requeued: list[int] = field(default_factory=list)
    skipped_alive: int = 0


def inbox_requeue(
    *, min_age: timedelta = timedelta(seconds=10), now: datetime | None = None, limit: int = 1000
) -> RequeueResult:
    """Put back on the queues every kept message that is not answered and has no live job.

    Covers: rows left ``pending`` (Redis was down), rows ``queued``/``deferred`` whose job vanished
    (Redis restarted and lost it), rows ``deferred`` whose time passed more than ``min_age`` ago while
    their job still waits on rq's schedule (no scheduler alive to run it), and rows ``processing``
    whose worker died (its in-flight key expired). Rows younger than ``min_age`` are left alone: their
    webhook may still be enqueueing. Every open row is looked at, ``limit`` rows per query (by id),
    however many there are. Idempotent: a row with a live job is not queued twice, and the job itself
    skips answered rows.
    """
    now = now or timezone.now()
    result = RequeueResult()
    # Senders whose earliest message is parked until later: their other messages wait behind it and
    # are answered by its scheduled job, in order; queuing them now would only run no-op jobs.
    waiting = set(
        InboundMessage.objects.filter(status=InboundMessage.Status.DEFERRED, not_before__gt=now).values_list(
            "page_id", "psid"
        )
    )
    connection = channel_redis()
    queued = _QueuedJobs(connection)
    after_id = 0
    while True:
        rows = list(
            InboundMessage.objects.filter(
                status__in=InboundMessage.OPEN_STATUSES, received_at__lte=now - min_age, id__gt=after_id
            ).order_by("id")[: max(1, limit)]
        )
        if not rows:
            return result
        after_id = rows[-1].id
        for row in rows:
            _requeue_row(
                row, result, waiting=waiting, now=now, min_age=min_age, connection=connection, queued=queued
            )


def _requeue_row(
    row: InboundMessage,
    result: RequeueResult,
    *,
    waiting: set,
    now: datetime,
    min_age: timedelta,
    connection: redis.Redis,
    queued: _QueuedJobs,
) -> None:
    if row.status != InboundMessage.Status.DEFERRED and (row.page_id, row.psid) in waiting:
        result.skipped_alive += 1
        return
    if row.status == InboundMessage.Status.PROCESSING:
        if inflight_alive(inbound_id=row.id):
            result.skipped_alive += 1
            return
    elif row.status != InboundMessage.Status.PENDING and _job_alive(
        row, connection, overdue_before=now - min_age, queued=queued
    ):
        result.skipped_alive += 1
        return
    if row.status == InboundMessage.Status.DEFERRED and row.not_before and row.not_before > now:
        # Parked until later and its scheduled job was lost: schedule it again, don't run it now.
        _enqueue_one(row, at=row.not_before, fresh=True)
        result.requeued.append(row.id)
        return
    updated = InboundMessage.objects.filter(id=row.id, status=row.status).update(
        status=InboundMessage.Status.QUEUED, status_reason="requeued"
    )
    if not updated:
        return  # a worker moved it on meanwhile
    _enqueue_one(row, fresh=True)
    result.requeued.append(row.id)
    logger.warning(
        "messenger.inbox.requeued",
        extra={"mid": row.mid, "psid_hash": hash_psid(row.psid), "was": row.status},
    )
