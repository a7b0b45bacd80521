"""The default rq worker class: many messages at once in one process, on a pool of threads.

``python manage.py rqworker messenger_fast messenger_slow --with-scheduler`` runs this class. A
message spends nearly all of its time waiting: on the chat model (a second or more with a real one)
and on the Send API (about 150 ms). rq runs one job per worker process, so a process sat idle through
both; this class runs up to ``MESSENGER_WORKER_CONCURRENCY`` jobs at once, each on a thread of its own.

Why threads and not asyncio: the whole path (the Django ORM, redis-py, requests, the engines) is
blocking code that releases the GIL while it waits on a socket, so threads carry it as it is, with
its tests; asyncio would need every layer rewritten, and rq's ``async def`` jobs get a fresh event
loop per job that is never closed (rq PR #2487). ``bench/pipeline.py`` measures what the threads buy.

How it stays as safe as one job per process:

- **Order per sender.** Unchanged: a job takes the sender's Redis lock (``messenger.ordering``), so
  two threads of one process never answer one user at once, any more than two processes do.
- **Leases.** Each in-flight message has its own lock, in-flight key and heartbeat thread; the main
  thread keeps every running job's rq execution alive in rq's registries (rq's ``SimpleWorker`` does
  not, so a long job would look abandoned to rq).
- **Timeouts.** A thread can't be killed, so rq's job timeout (a signal, main thread only) is off for
  this class: the pipeline bounds its own steps (the engine within ``MESSENGER_PROCESSING_TIMEOUT_MS``,
  each Graph call within ``MESSENGER_SEND_TIMEOUT_MS``, a drain within ``DRAIN_BUDGET_S``).
- **Graceful stop.** First SIGTERM/SIGINT: no new job; each drain finishes the message in hand and
  hands on the rest of its sender's messages (``messenger.ordering.drains_wind_down``); the worker
  waits up to ``MESSENGER_SHUTDOWN_TIMEOUT_MS`` for them. Past that, or on a second signal, every lock
  of the process is revoked (no thread starts a send again), the sends already on the wire get up to
  :data:`SENDS_SETTLE_S` to land and be recorded, every message still ``processing`` under this worker
  is put back on its queue, and the process exits with ``EXIT_CODE_JOB_ABANDONED``.
- **SIGKILL.** As for every class: the leases lapse and the recovery sweep requeues each message;
  parts whose send was under way wait for their echo (``messenger.delivery``).
- **Database connections.** Django's are per thread. Each job thread keeps its own between jobs
  (closed when stale or past ``CONN_MAX_AGE``, and after a job that failed) and closes it when the
  worker stops. A thread waiting on a slow model gives its connection back meanwhile
  (``messenger.replies.DB_KEPT_WHILE_WAITING_S``), so with a real model a process holds far fewer
  than ``MESSENGER_WORKER_CONCURRENCY + 1`` connections; that is the bound with an instant engine.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connections
from rq.timeouts import BaseDeathPenalty
from rq.worker import SimpleWorker, WorkerStatus

from messenger.ordering import drains_wind_down, leases_revoke, sends_settle
from messenger.worker import MessengerWorkerMixin

logger = logging.getLogger("messenger.worker")

# Past the shutdown timeout, how long the worker lets Send API calls already on the wire land and be
# recorded before it puts the messages back and exits (a Graph answer takes ~150 ms): their parts are
# then sent, not in doubt. The stop takes at most this much longer than MESSENGER_SHUTDOWN_TIMEOUT_MS.
SENDS_SETTLE_S = 1.0
# How often the main thread wakes, while every slot is busy, to keep rq's records of the jobs alive.
_SLOT_WAIT_S = 1.0


class PipelineBoundedJob(BaseDeathPenalty):
    """rq's job timeout for jobs on threads: none from outside, the pipeline bounds its own steps.

    rq's default penalty arms SIGALRM, which only the main thread may do; raising an exception into a
    thread at an arbitrary point (rq's ``TimerDeathPenalty``) could stop a send between the Graph call
    and its record. The steps a job takes each have their own budget (the module docstring).
    """

    def setup_death_penalty(self) -> None:
        return None

    def cancel_death_penalty(self) -> None:
        return None


class MessengerThreadWorker(MessengerWorkerMixin, SimpleWorker):
    """Runs up to ``MESSENGER_WORKER_CONCURRENCY`` jobs at once on threads; see the module docstring."""

    death_penalty_class = PipelineBoundedJob

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.concurrency = max(1, settings.MESSENGER_WORKER_CONCURRENCY)
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._free_slots = threading.Semaphore(self.concurrency)
        self._running: dict[str, tuple] = {}  # execution id -> (job, execution)
        self._running_changed = threading.Condition()
        self._beaten_at = 0.0
        self._exit_lock = threading.Lock()

    # --- start: the job threads ----------------------------------------------------------------------

    def bootstrap(self, *args, **kwargs) -> None:
        super().bootstrap(*args, **kwargs)
        # messenger.jobs records this name on the rows it processes; put_back_inflight looks for it.
        os.environ["RQ_WORKER_ID"] = self.name
        # rq forks its scheduler right after this: it must inherit neither an open PostgreSQL
        # connection (its exit would end the server session under us) nor running job threads (a
        # lock one of them held would stay held in the child), so the threads start with the first
        # dequeue (:meth:`_start_threads`).
        connections.close_all()

    def _start_threads(self) -> None:
        for number in range(self.concurrency):
            thread = threading.Thread(target=self._job_thread, name=f"messenger-job-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info("messenger.worker.threads", extra={"worker": self.name, "concurrency": self.concurrency})

    def _release_db_after_sweep(self) -> None:
        # Nothing is forked from this process: keep the main thread's connection unless it is stale.
        close_old_connections()

    # --- the main thread: a job for each free slot ---------------------------------------------------

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        """Wait for a free slot, then for a job, in short rounds that look for a stop request.

        A stop only sets flags (:meth:`_shutdown`): raising out of the blocking pop, as rq does, could
        drop a job already taken off its queue. Each round (at most :data:`_SLOT_WAIT_S`) also keeps
        the running jobs' records alive in rq's registries.
        """
        if not self._threads:
            self._start_threads()
        while not self._free_slots.acquire(timeout=_SLOT_WAIT_S):
            self._beat_running()
            if self._stop_requested:
                return None
        try:
            while True:
                self._beat_running()
                if self._stop_requested:
                    self._free_slots.release()
                    return None
                if timeout is None:  # burst: one non-blocking look
                    result = super().dequeue_job_and_maintain_ttl(None, max_idle_time)
                else:
                    # rq's own loop returns only with a job, or once idle for max_idle_time: one round.
                    result = super().dequeue_job_and_maintain_ttl(int(_SLOT_WAIT_S), int(_SLOT_WAIT_S))
                if result is not None or timeout is None:
                    break
        except BaseException:
            self._free_slots.release()
            raise
        if result is None:
            self._free_slots.release()
        return result

    def execute_job(self, job, queue) -> None:
        """Hand the job to a job thread; the slot taken in the dequeue is freed when it ends."""
        execution = self.prepare_execution(job)
        with self._running_changed:
            self._running[execution.id] = (job, execution)
        self._tasks.put((job, queue, execution))

    def _beat_running(self) -> None:
        """Keep rq's worker, execution and job heartbeats of the running jobs (every monitoring interval)."""
        if time.monotonic() - self._beaten_at < self.job_monitoring_interval / 2:
            return
        self._beaten_at = time.monotonic()
        with self._running_changed:
            running = list(self._running.values())
        for job, execution in running:
            try:
                self.maintain_heartbeats(job, execution)
            except Exception as exc:  # noqa: BLE001 - the next beat tries again; the job goes on
                logger.warning(
                    "messenger.worker.job-heartbeat-failed", extra={"job": job.id, "error": type(exc).__name__}
                )

    # --- the job threads -----------------------------------------------------------------------------

    def _job_thread(self) -> None:
        try:
            while True:
                task = self._tasks.get()
                if task is None:
                    return
                self._run(*task)
        finally:
            connections.close_all()  # this thread's connections only (Django's are per thread)

    def _run(self, job, queue, execution) -> None:
        ok = False
        close_old_connections()
        try:
            ok = self.perform_job(job, queue, execution)
        except Exception as exc:  # perform_job records a job's failure itself; this would be rq's own bug
            logger.exception("messenger.worker.job-thread-error", extra={"job": job.id, "error": type(exc).__name__})
        finally:
            with self._running_changed:
                self._running.pop(execution.id, None)
                self.executions.pop(execution.id, None)
                if not self._running:
                    self.set_state(WorkerStatus.IDLE)
                self._running_changed.notify_all()
            self._free_slots.release()
        if ok:
            close_old_connections()
        else:
            connections.close_all()  # a failed job may have left its connection mid-query

    # --- stopping ------------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """First SIGTERM/SIGINT (rq's ``request_stop`` calls this): take no new job, wind the drains down.

        Flags only: the main thread sees them within a second, wherever it is (the dequeue rounds,
        the wait in :meth:`teardown`).
        """
        self._stop_requested = True
        self.set_shutdown_requested_date()
        drains_wind_down()
        with self._running_changed:
            in_flight = len(self._running)
        logger.info(
            "messenger.worker.shutdown-waiting",
            extra={
                "worker": self.name,
                "in_flight": in_flight,
                "timeout_s": settings.MESSENGER_SHUTDOWN_TIMEOUT_MS / 1000,
            },
        )

    def request_force_stop(self, signum, frame) -> None:
        """Second signal: stop now; the messages in flight go back on their queues."""
        with self._running_changed:
            busy = bool(self._running)
        if not busy:
            super().request_force_stop(signum, frame)  # raises SystemExit (or ignores a repeat within 1 s)
            return
        requested = self._shutdown_requested_date
        if requested is not None and (time.time() - requested.timestamp()) < 1:
            return  # rq's rule: the same signal twice within a second (a pool and the OS) counts once
        if self._exit_lock.locked():
            return  # already giving the messages back and leaving (this thread may be the one doing it)
        self._abandon_and_exit()

    def teardown(self) -> None:
        """Wait for the jobs in flight (bounded when a stop was asked for), then stop the threads."""
        self._wait_for_running()
        for _ in self._threads:
            self._tasks.put(None)
        for thread in self._threads:
            thread.join(timeout=5)
        super().teardown()

    def _wait_for_running(self) -> None:
        """Until no job runs; once a stop was asked for (before or during this wait), no longer than
        ``MESSENGER_SHUTDOWN_TIMEOUT_MS`` after it."""
        drains_wind_down()
        while True:
            with self._running_changed:
                if not self._running:
                    return
                self._running_changed.wait(timeout=0.1)
            self._beat_running()
            requested = self._shutdown_requested_date if self._stop_requested else None
            if requested is None:
                continue
            deadline = requested.timestamp() + settings.MESSENGER_SHUTDOWN_TIMEOUT_MS / 1000
            if time.time() >= deadline and self._running:
                logger.warning("messenger.worker.shutdown-timeout", extra={"worker": self.name})
                self._abandon_and_exit()

    def _abandon_and_exit(self) -> None:
        """Revoke the leases, put every message in flight back, leave rq's registries tidy, exit.

        Runs once (a lock); a second caller blocks until the process is gone. The put-back runs in a
        thread of its own with its own DB connection: a signal may have interrupted the main thread
        in the middle of a query on its connection.
        """
        self._exit_lock.acquire()
        leases_revoke()
        left = sends_settle(SENDS_SETTLE_S)
        if left:
            logger.warning("messenger.worker.sends-left-in-doubt", extra={"worker": self.name, "sends": left})
        self.put_back_and_exit()
