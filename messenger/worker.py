"""The rq worker class of the channel (``RQ["WORKER_CLASS"]``): graceful stops and dead-worker recovery.

``python manage.py rqworker messenger_fast messenger_slow --with-scheduler`` runs this class with no
extra flags. On top of rq's fork-per-job worker it adds:

- **A bounded warm shutdown.** On SIGTERM (or SIGINT) the worker takes no new job and waits up to
  ``MESSENGER_SHUTDOWN_TIMEOUT_MS`` for the message in flight. Past that it kills the work horse and
  puts the message back on its queue, so another worker answers it. A second SIGTERM/SIGINT stops
  at once, still putting the message back. Parts already sent are recorded, so the next worker sends
  only what is missing (``messenger.delivery``).
- **Recovery of messages whose worker died** (SIGKILL, OOM): every
  ``MESSENGER_RECOVERY_INTERVAL_SECONDS`` (and once at start) one worker at a time runs
  ``messenger.inbox.inbox_requeue``, which finds kept messages that are not answered and have no
  live job or heartbeat and queues them again. rq's own abandoned-job cleanup runs only every ten
  minutes; this bounds the delay to about ``MESSENGER_LEASE_SECONDS + interval`` seconds (25 s by default).

``MessengerInProcessWorker`` (opt-in: ``RQ_WORKER_CLASS=messenger.worker.MessengerInProcessWorker``)
runs each job in the worker process itself, as rq's ``SimpleWorker`` does, instead of forking a work
horse per job: the PostgreSQL connection, Redis pools, the Send API session and the engine are reused
across jobs (2.2-2.4x the throughput, ``docs/performance.md``). The trade-offs: a job can't be killed
apart from its worker, so past the shutdown timeout the worker puts the message back and exits the
process at once; and a SIGKILL of the worker takes the message in flight down with it, recovered by
the sweep within ``MESSENGER_LEASE_SECONDS + interval`` (the forking worker's horse would finish it).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connections
from rq.utils import now
from rq.worker import SimpleWorker, Worker, WorkerStatus

from messenger.inbox import inbox_requeue, inbox_requeue_one
from messenger.models import InboundMessage
from messenger.ordering import sender_lease_drop
from messenger.queues import channel_redis
from messenger.retention import prune_schedule_ensure
from observability.hashing import hash_psid

logger = logging.getLogger("messenger.worker")

SWEEP_LOCK_KEY = "messenger:recovery-sweep"


def _rq_logging_level(asked) -> str:
    """The level of rq's worker logs: what ``rqworker`` asked for, unless ``LOG_LEVEL`` is quieter."""
    levels = [logging.getLevelName(str(level).upper()) for level in (asked or "INFO", settings.LOG_LEVEL)]
    numbers = [level for level in levels if isinstance(level, int)]
    return logging.getLevelName(max(numbers)) if numbers else "INFO"


class MessengerWorkerMixin:
    """What both worker classes share: the recovery sweep, the warm-up, the put-back of the message
    in flight, the ``ready`` log. Mixed in before an rq worker class (``Worker`` or ``SimpleWorker``)."""

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

    def bootstrap(self, logging_level="INFO", *args, **kwargs) -> None:
        # rqworker asks for rq's per-job INFO lines (four a job); LOG_LEVEL=WARNING must quiet them too.
        super().bootstrap(_rq_logging_level(logging_level), *args, **kwargs)
        self.warm_up()
        self.recovery_sweep()
        prune_schedule_ensure()  # the daily retention job (messenger.retention); never raises

    def warm_up(self) -> None:
        """Build what every job needs once, here, so each forked work horse inherits it ready.

        rq forks a fresh horse per job: anything a job builds lazily (the chat engine and its rules
        file, the markdown parser, the pipeline's imports) would otherwise be rebuilt for every message.
        """
        try:
            from engine import get_engine
            from messenger import pipeline  # noqa: F401 - imports the whole pipeline once
            from messenger.markdown import strip_markdown

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
            if not channel_redis().set(SWEEP_LOCK_KEY, self.name, nx=True, ex=interval):
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
            self._release_db_after_sweep()

    def _release_db_after_sweep(self) -> None:
        # The next work horse is forked from this process: it must not inherit an open connection.
        connections.close_all()

    # --- graceful shutdown ---------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        # From here on SIGTERM is a graceful stop (before it, the default action ends the process).
        logger.info(
            "messenger.worker.ready",
            extra={"worker": self.name, "queues": ",".join(self.queue_names()), "worker_class": type(self).__name__},
        )

    def _start_shutdown_timer(self, signum: int, callback) -> None:
        """Call ``callback`` (in a timer thread) once ``MESSENGER_SHUTDOWN_TIMEOUT_MS`` has passed."""
        if self._shutdown_timer is not None:
            return
        timeout_s = settings.MESSENGER_SHUTDOWN_TIMEOUT_MS / 1000
        logger.info(
            "messenger.worker.shutdown-waiting",
            extra={"worker": self.name, "signal": signal.Signals(signum).name, "timeout_s": timeout_s},
        )
        self._shutdown_timer = threading.Timer(timeout_s, callback)
        self._shutdown_timer.daemon = True
        self._shutdown_timer.start()

    def teardown(self) -> None:
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
        super().teardown()

    def put_back_inflight(self) -> None:
        """Put the messages this worker's stopped job was answering back on their queues.

        The job is dead (forking: its horse was killed) or frozen for good (in-process: the process
        exits right after), so its sender lock and in-flight key are freed here rather than left to
        expire, and the next worker can start on the message at once. Only rows still ``processing``
        under this worker's name are touched, and ``inbox_requeue_one`` never reopens a final row: a
        message answered just before this ran is left answered.
        """
        if self._put_back_done:
            return
        self._put_back_done = True
        try:
            rows = list(InboundMessage.objects.filter(worker_name=self.name, status=InboundMessage.Status.PROCESSING))
            for row in rows:
                sender_lease_drop(page_id=row.page_id, psid=row.psid, inbound_id=row.id)
                inbox_requeue_one(inbound=row)
                logger.warning(
                    "messenger.worker.put-back",
                    extra={"worker": self.name, "mid": row.mid, "psid_hash": hash_psid(row.psid)},
                )
        except Exception as exc:  # noqa: BLE001 - the recovery sweep picks the message up instead
            logger.error("messenger.worker.put-back-failed", extra={"worker": self.name, "error": type(exc).__name__})
        finally:
            connections.close_all()

    def put_back_and_exit(self) -> None:
        """Put the messages in flight back, leave rq's registries tidy, flush the logs, exit the process
        with ``EXIT_CODE_JOB_ABANDONED``: for a class whose jobs run in this process and can't be killed
        apart from it. The DB work runs in a thread of its own: the main thread may be frozen in the
        middle of a query on its connection."""
        helper = threading.Thread(target=self._put_back_and_leave, name="messenger-put-back", daemon=True)
        helper.start()
        helper.join(timeout=max(5.0, settings.MESSENGER_LEASE_SECONDS))
        logger.warning("messenger.worker.exit-abandoned-job", extra={"worker": self.name})
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_CODE_JOB_ABANDONED)

    def _put_back_and_leave(self) -> None:
        self.put_back_inflight()
        try:
            process = self.scheduler._process if self.scheduler else None
            if process is not None and process.is_alive():
                # os._exit skips rq's teardown: stop the scheduler child so it does not outlive us.
                process.terminate()
                process.join(timeout=2)
            self.register_death()
        except Exception as exc:  # noqa: BLE001 - rq expires a dead worker's key by itself; logged
            logger.error(
                "messenger.worker.deregister-failed", extra={"worker": self.name, "error": type(exc).__name__}
            )


class MessengerWorker(MessengerWorkerMixin, Worker):
    """rq's forking worker with a time-limited warm shutdown and a recovery sweep (the default class)."""

    def request_stop(self, signum, frame) -> None:
        """First SIGTERM/SIGINT: finish the job in flight, but for no longer than the shutdown timeout."""
        busy = bool(self.horse_pid)
        if busy:
            # Started first: rq's handler below may take a second to stop the scheduler.
            self._start_shutdown_timer(signum, self._shutdown_timeout_reached)
        super().request_stop(signum, frame)  # raises StopRequested when idle

    def _shutdown_timeout_reached(self) -> None:
        if self.horse_pid:
            logger.warning("messenger.worker.shutdown-timeout", extra={"worker": self.name})
            self._killed_for_shutdown = True
            self.kill_horse(signal.SIGKILL)

    def request_force_stop(self, signum, frame) -> None:
        """Second signal: stop now; the message in flight goes back on its queue."""
        try:
            # Kills the horse, then raises SystemExit; returns (ignoring it) on a repeat within 1 s,
            # in which case the shutdown timer must keep running.
            super().request_force_stop(signum, frame)
        except SystemExit:
            if self._shutdown_timer is not None:
                self._shutdown_timer.cancel()
            self.put_back_inflight()
            raise

    def execute_job(self, job, queue) -> None:
        self._killed_for_shutdown = False
        super().execute_job(job, queue)
        if self._killed_for_shutdown:
            self.put_back_inflight()


# Sent by the shutdown timer to the main thread, whose handler freezes the job where it stands.
_STOP_JOB_SIGNAL = signal.SIGUSR1
# How long the timer waits for the main thread to take that signal before putting back on its own
# (the main thread may be blocked in C code that does not return to Python).
_FREEZE_WAIT_S = 2.0
EXIT_CODE_JOB_ABANDONED = 3


class MessengerInProcessWorker(MessengerWorkerMixin, SimpleWorker):
    """Runs each job in the worker process (rq's ``SimpleWorker``), with the same warm shutdown,
    put-back and recovery sweep as ``MessengerWorker``. Opt-in; see the module docstring.

    Contracts:

    - Between jobs, connections Django considers unusable or past ``CONN_MAX_AGE`` are closed
      (``close_old_connections``); after a job that failed, every DB connection is closed (an
      exception such as rq's job timeout may have interrupted a query mid-way).
    - First SIGTERM/SIGINT: no new job; the job in flight gets up to ``MESSENGER_SHUTDOWN_TIMEOUT_MS``.
      Past it, or on a second SIGTERM/SIGINT, the job is frozen where it stands (the main thread
      runs a signal handler that never returns to it), its message is put back (``put_back_inflight``
      from a thread of its own, with its own DB connection) and the process exits with
      ``EXIT_CODE_JOB_ABANDONED``: a job running in this process can't be killed any other way.
    - rq's job timeout is rq's in-process death penalty (SIGALRM raises ``JobTimeoutException`` in
      the job); the pipeline records what it leaves (a fallback reply, a failed row, or a row the
      sweep requeues once its lease lapses).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._job_in_flight = False
        self._exit_lock = threading.Lock()
        self._frozen = threading.Event()

    def _release_db_after_sweep(self) -> None:
        # Nothing is forked from this process: keep the connection for the next job unless it is stale.
        close_old_connections()

    def _install_signal_handlers(self) -> None:
        signal.signal(_STOP_JOB_SIGNAL, self._stop_job_now)
        super()._install_signal_handlers()

    def execute_job(self, job, queue) -> None:
        """Run the job here, as ``SimpleWorker.execute_job`` does, between two DB connection checks."""
        # messenger.jobs records this name on the rows it processes; put_back_inflight looks for it.
        os.environ["RQ_WORKER_ID"] = self.name
        os.environ["RQ_JOB_ID"] = job.id
        close_old_connections()
        self._job_in_flight = True
        try:
            execution = self.prepare_execution(job)
            ok = self.perform_job(job, queue, execution)
        finally:
            self._job_in_flight = False
        if ok:
            close_old_connections()
        else:
            connections.close_all()
        self.set_state(WorkerStatus.IDLE)

    def request_stop(self, signum, frame) -> None:
        """First SIGTERM/SIGINT: finish the job in flight, but for no longer than the shutdown timeout."""
        busy = self._job_in_flight
        if busy:
            # Started first: rq's handler below may take a second to stop the scheduler.
            self._start_shutdown_timer(signum, self._shutdown_timeout_reached)
        super().request_stop(signum, frame)  # raises StopRequested when idle

    def _shutdown_timeout_reached(self) -> None:
        """Timer thread: ask the main thread to freeze the job; do the put-back here if it can't."""
        if not self._job_in_flight:
            return
        logger.warning("messenger.worker.shutdown-timeout", extra={"worker": self.name})
        signal.pthread_kill(threading.main_thread().ident, _STOP_JOB_SIGNAL)
        if not self._frozen.wait(_FREEZE_WAIT_S) and self._job_in_flight:
            self._abandon_job_and_exit()

    def _stop_job_now(self, signum, frame) -> None:
        """Main thread, between two bytecodes of the job: stop it for good, unless it just finished."""
        if not self._job_in_flight:
            return  # finished as the timer fired: the work loop stops on its own
        self._frozen.set()
        self._abandon_job_and_exit()

    def request_force_stop(self, signum, frame) -> None:
        """Second signal: stop now; the message in flight goes back on its queue."""
        if not self._job_in_flight:
            super().request_force_stop(signum, frame)  # raises SystemExit (or ignores a repeat within 1 s)
            return
        if self._is_repeat_signal():
            # rq's rule: the same signal twice within a second (a pool and the OS) counts once.
            return
        if self._exit_lock.locked():
            return  # already putting the message back and leaving (this thread may be the one doing it)
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
        self._frozen.set()
        self._abandon_job_and_exit()

    def _is_repeat_signal(self) -> bool:
        requested = self._shutdown_requested_date
        return requested is not None and (now() - requested) < timedelta(seconds=1)

    def _abandon_job_and_exit(self) -> None:
        """Put the message in flight back, leave rq's registries tidy, flush the logs, exit the process.

        Runs once (a lock); a second caller blocks until the process is gone. The DB work runs in a
        thread of its own: the main thread may be frozen in the middle of a query on its connection.
        """
        self._exit_lock.acquire()
        self.put_back_and_exit()
