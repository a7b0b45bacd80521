"""The rq worker class of the channel (``RQ["WORKER_CLASS"]``): graceful stops and dead-worker recovery.

``python manage.py rqworker messenger_fast messenger_slow --with-scheduler`` runs this class with no
extra flags. On top of rq's fork-per-job worker it adds:

- **A bounded warm shutdown.** On SIGTERM (or SIGINT) the worker takes no new job and waits up to
  ``MESSENGER_SHUTDOWN_TIMEOUT_MS`` for the message in flight. Past that it kills the work horse and
  puts the message back on its queue, so another worker answers it. A second SIGTERM/SIGINT stops
  at once, still putting the message back. Parts already sent are recorded, so the next worker sends
  only what is missing (``messenger.pipeline``).
- **Recovery of messages whose worker died** (SIGKILL, OOM): every
  ``MESSENGER_RECOVERY_INTERVAL_SECONDS`` (and once at start) one worker at a time runs
  ``messenger.inbox.inbox_requeue``, which finds kept messages that are not answered and have no
  live job or heartbeat and queues them again. rq's own abandoned-job cleanup runs only every ten
  minutes; this bounds the delay to about ``MESSENGER_LEASE_SECONDS + interval`` seconds (25 s by default).
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import timedelta

from django.conf import settings
from django.db import connections
from rq.worker import Worker

from messenger.inbox import INFLIGHT_KEY, LOCK_KEY, inbox_requeue, inbox_requeue_one
from messenger.models import InboundMessage
from observability.hashing import hash_psid

logger = logging.getLogger("messenger.worker")

SWEEP_LOCK_KEY = "messenger:recovery-sweep"


class MessengerWorker(Worker):
    """rq's forking worker with a time-limited warm shutdown and a recovery sweep."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("maintenance_interval", settings.MESSENGER_RECOVERY_INTERVAL_SECONDS)
        super().__init__(*args, **kwargs)
        self.maintenance_interval = settings.MESSENGER_RECOVERY_INTERVAL_SECONDS
        self._shutdown_timer: threading.Timer | None = None
        self._put_back_done = False

    # --- idle loop: wake up often enough for the recovery sweep --------------------------------------

    @property
    def dequeue_timeout(self) -> int:
        # rq blocks in BLPOP for ``worker_ttl - 15`` s (405 s by default) and runs maintenance only
        # between blocks; waking every few seconds keeps the sweep on its interval while idle.
        return max(1, min(super().dequeue_timeout, settings.MESSENGER_RECOVERY_INTERVAL_SECONDS // 3 or 1))

    def bootstrap(self, *args, **kwargs) -> None:
        super().bootstrap(*args, **kwargs)
        self.warm_up()
        self.recovery_sweep()

    def warm_up(self) -> None:
        """Build what every job needs once, here, so each forked work horse inherits it ready.

        rq forks a fresh horse per job: anything a job builds lazily (the chat engine and its rules
        file, the markdown parser, the pipeline's imports) would otherwise be rebuilt for every message.
        """
        try:
            from chatbot.engine import get_engine
            from messenger import pipeline  # noqa: F401 - imports the whole pipeline once
            from messenger.formatter import strip_markdown

            get_engine()
            strip_markdown("**warm** up")
        except Exception as exc:  # noqa: BLE001 - a job will raise the same error where it is recorded
            logger.error("messenger.worker.warm-up-failed", extra={"worker": self.name, "error": type(exc).__name__})

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        self.recovery_sweep()

    def recovery_sweep(self) -> None:
        """Requeue stranded messages; one worker at a time (a Redis lock with the interval as TTL)."""
        interval = max(1, settings.MESSENGER_RECOVERY_INTERVAL_SECONDS)
        try:
            if not self.connection.set(SWEEP_LOCK_KEY, self.name, nx=True, ex=interval):
                return
            result = inbox_requeue(min_age=timedelta(seconds=min(10, interval)))
            if result.requeued:
                logger.warning(
                    "messenger.worker.recovered",
                    extra={"worker": self.name, "requeued": len(result.requeued)},
                )
        except Exception as exc:  # noqa: BLE001 - the sweep must never stop the worker; logged
            logger.error("messenger.worker.sweep-failed", extra={"worker": self.name, "error": type(exc).__name__})
        finally:
            # The next work horse is forked from this process: it must not inherit an open connection.
            connections.close_all()

    # --- graceful shutdown ---------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        # From here on SIGTERM is a graceful stop (before it, the default action ends the process).
        logger.info("messenger.worker.ready", extra={"worker": self.name, "queues": ",".join(self.queue_names())})

    def request_stop(self, signum, frame) -> None:
        """First SIGTERM/SIGINT: finish the job in flight, but for no longer than the shutdown timeout."""
        busy = bool(self.horse_pid)
        super().request_stop(signum, frame)  # raises StopRequested when idle
        if busy and self._shutdown_timer is None:
            timeout_s = settings.MESSENGER_SHUTDOWN_TIMEOUT_MS / 1000
            logger.info(
                "messenger.worker.shutdown-waiting",
                extra={"worker": self.name, "signal": signal.Signals(signum).name, "timeout_s": timeout_s},
            )
            self._shutdown_timer = threading.Timer(timeout_s, self._shutdown_timeout_reached)
            self._shutdown_timer.daemon = True
            self._shutdown_timer.start()

    def _shutdown_timeout_reached(self) -> None:
        if self.horse_pid:
            logger.warning("messenger.worker.shutdown-timeout", extra={"worker": self.name})
            self._killed_for_shutdown = True
            self.kill_horse(signal.SIGKILL)

    def request_force_stop(self, signum, frame) -> None:
        """Second signal: stop now; the message in flight goes back on its queue."""
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
        try:
            super().request_force_stop(signum, frame)  # kills the horse, then raises SystemExit
        except SystemExit:
            self.put_back_inflight()
            raise

    def execute_job(self, job, queue) -> None:
        self._killed_for_shutdown = False
        super().execute_job(job, queue)
        if self._killed_for_shutdown:
            self.put_back_inflight()

    def teardown(self) -> None:
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
        super().teardown()

    def put_back_inflight(self) -> None:
        """Put the messages this worker's (now dead) horse was answering back on their queues.

        The horse is gone, so its sender lock and in-flight key are freed here rather than left to
        expire, and the next worker can start on the message at once.
        """
        if self._put_back_done:
            return
        self._put_back_done = True
        try:
            rows = list(InboundMessage.objects.filter(worker_name=self.name, status=InboundMessage.Status.PROCESSING))
            for row in rows:
                self.connection.delete(
                    LOCK_KEY.format(page_id=row.page_id, psid=row.psid), INFLIGHT_KEY.format(id=row.id)
                )
                inbox_requeue_one(inbound=row)
                logger.warning(
                    "messenger.worker.put-back",
                    extra={"worker": self.name, "mid": row.mid, "psid_hash": hash_psid(row.psid)},
                )
        except Exception as exc:  # noqa: BLE001 - the recovery sweep picks the message up instead
            logger.error("messenger.worker.put-back-failed", extra={"worker": self.name, "error": type(exc).__name__})
        finally:
            connections.close_all()
