"""Retention: how long what users sent is kept, the prune that applies it, and its daily job.

``MESSENGER_RETENTION_DAYS`` (default 90) bounds finished inbound rows (with the raw webhook item
each holds), their reply parts and observability events; ``CONVERSATIONS_RETENTION_DAYS`` (default
365) bounds conversations and their messages, the transcripts staff read. 0 keeps a kind for ever.
Only *final* inbound rows are pruned: an open one (pending, queued, processing, deferred) is work
still owed to a user, whatever its age. Defaults and their reasons: ``docs/operations-commands.md``.

**Batches.** Every prune selects at most ``MESSENGER_PRUNE_BATCH_SIZE`` ids and deletes them by id
in its own short transaction, then loops: the webhook's inserts never wait behind a million-row
DELETE, and a prune stopped halfway has still done its part. The apps below the channel prune
their own tables (``conversations.services.conversations_prune``,
``observability.services.events_prune``); this module calls down to them, never the reverse.

**Daily.** :func:`prune_daily` is an rq job with the fixed id :data:`PRUNE_JOB_ID`, so it can
never be scheduled twice. Each run asks rq to run it again 24 h later: it sets its own
``repeats_left``, and the worker schedules the repeat in the same Redis transaction that records
the success. (Calling ``enqueue_in`` with its own id from inside the job would not do: the worker's
bookkeeping after the job returns marks that id finished and expires it, taking the new schedule
with it.) :func:`prune_schedule_ensure`, called by every worker at start, seeds the job when it is
missing (first deploy, Redis flushed, a run that crashed). The first run is at the next
:data:`PRUNE_HOUR_UTC`, a quiet hour.

The drain's lookup (``messenger.selectors.inbound_open_for_sender``) filters on the open statuses
(rather than excluding the final ones), so PostgreSQL uses the partial index
``inbound_sender_open_idx`` that this module's migration adds and reads only that sender's open rows
instead of walking their whole history.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from rq import get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from conversations.services import conversations_prune
from messenger.models import InboundMessage, OutboundPart
from messenger.queues import get_queue
from messenger.tally import Tally
from observability.services import events_prune

logger = logging.getLogger("messenger.retention")

PRUNE_JOB_ID = "messenger-prune-daily"
PRUNE_JOB_FUNCTION = "messenger.retention.prune_daily"
PRUNE_INTERVAL = timedelta(hours=24)
PRUNE_HOUR_UTC = 3
# A prune of a large backlog takes a while; rq kills a job past its timeout.
PRUNE_JOB_TIMEOUT_S = 3600
_ALIVE = {JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED}


# --- pruning -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneResult(Tally):
    """Rows deleted (or, in a dry run, that would be), per kind."""

    inbound: int = 0
    parts: int = 0
    events: int = 0
    conversations: int = 0
    messages: int = 0


def _final_before(before: datetime):
    finished = Q(finished_at__lt=before) | Q(finished_at__isnull=True, received_at__lt=before)
    return InboundMessage.objects.filter(finished).exclude(status__in=InboundMessage.OPEN_STATUSES)


def inbound_prune(*, before: datetime, batch_size: int, dry_run: bool = False) -> tuple[int, int]:
    """Delete final inbound rows finished before ``before`` and their parts; ``(inbound, parts)``.

    One short transaction per batch of ``batch_size`` ids: the parts, then the rows by id (the rows
    are deleted without Django's cascade collector, which would first load every row's raw JSON).
    """
    old = _final_before(before)
    if dry_run:
        return old.count(), OutboundPart.objects.filter(inbound__in=old).count()
    inbound = parts = 0
    while True:
        with transaction.atomic():
            ids = list(old.order_by().values_list("id", flat=True)[:batch_size])
            if not ids:
                return inbound, parts
            parts += OutboundPart.objects.filter(inbound_id__in=ids).delete()[0]
            # _raw_delete: one DELETE by id; the parts (the only rows pointing here) are gone already.
            inbound += InboundMessage.objects.filter(id__in=ids)._raw_delete(using="default")


def _cutoff(days: int, now: datetime) -> datetime | None:
    return now - timedelta(days=days) if days > 0 else None


def messenger_prune(
    *, dry_run: bool = False, now: datetime | None = None, batch_size: int | None = None
) -> PruneResult:
    """Apply both retention settings to every kind; what was (or would be) deleted."""
    now = now or timezone.now()
    batch = max(1, batch_size or settings.MESSENGER_PRUNE_BATCH_SIZE)
    counts: dict[str, int] = {}
    rows_before = _cutoff(settings.MESSENGER_RETENTION_DAYS, now)
    if rows_before is not None:
        counts["inbound"], counts["parts"] = inbound_prune(before=rows_before, batch_size=batch, dry_run=dry_run)
        counts["events"] = events_prune(before=rows_before, batch_size=batch, dry_run=dry_run)
    talks_before = _cutoff(settings.CONVERSATIONS_RETENTION_DAYS, now)
    if talks_before is not None:
        counts["conversations"], counts["messages"] = conversations_prune(
            before=talks_before, batch_size=batch, dry_run=dry_run
        )
    result = PruneResult(**counts)
    logger.info("messenger.prune.dry-run" if dry_run else "messenger.prune.done", extra=result.as_dict())
    return result


# --- the daily job -------------------------------------------------------------------------------------


def prune_daily() -> dict[str, int] | str:
    """The rq job: prune, then have rq run this job again in 24 h under the same id.

    A prune that raises is logged (``messenger.prune.failed``, with the traceback) and the job still
    succeeds, so tomorrow's run stays scheduled; rq repeats only a job that succeeded.
    """
    job = get_current_job()
    if job is not None:
        # Read by the worker when this returns: it schedules the repeat atomically with the success.
        job.repeats_left = 1
        job.repeat_intervals = [int(PRUNE_INTERVAL.total_seconds())]
    try:
        return messenger_prune().as_dict()
    except Exception as exc:  # logged with its traceback; the next run must stay scheduled
        logger.error("messenger.prune.failed", exc_info=True, extra={"error": type(exc).__name__})
        return f"failed: {type(exc).__name__}"


def _first_run(now: datetime) -> datetime:
    run = now.replace(hour=PRUNE_HOUR_UTC, minute=0, second=0, microsecond=0)
    return run if run > now else run + timedelta(days=1)


def prune_schedule_ensure(*, now: datetime | None = None) -> bool:
    """Schedule :func:`prune_daily` unless it is already scheduled, queued or running.

    Returns whether it scheduled it. Never raises: a worker calls it at start, and a Redis error
    must not stop the worker (the next start tries again); the error is logged.
    """
    try:
        queue = get_queue(settings.MESSENGER_SLOW_QUEUE)
        try:
            status = Job.fetch(PRUNE_JOB_ID, connection=queue.connection).get_status(refresh=False)
        except NoSuchJobError:
            status = None
        if status in _ALIVE:
            return False
        when = _first_run(now or timezone.now())
        queue.enqueue_at(
            when, PRUNE_JOB_FUNCTION, job_id=PRUNE_JOB_ID, job_timeout=PRUNE_JOB_TIMEOUT_S, result_ttl=86400
        )
        logger.info("messenger.prune.scheduled", extra={"run_at": when.isoformat()})
        return True
    except Exception as exc:  # noqa: BLE001 - the worker must start anyway; logged
        logger.error("messenger.prune.schedule-failed", extra={"error": type(exc).__name__})
        return False
