"""``mark_seen`` then ``typing_on``, only for a reply the user would otherwise wait for.

Why: each sender action is a Send API call that counts against the page's rate limit. Sent for every
message they doubled or tripled the calls per reply, and with the rules engine (a reply in a few ms)
the user never saw them. Now they go out only when the reply is not ready
``MESSENGER_TYPING_DELAY_MS`` (default 700 ms) after the engine is asked: a slow model shows "seen"
and "typing", an instant answer costs one call, its own.

How: :func:`sender_actions` wraps the reply's decision. Entering it schedules the actions on one
shared timer thread per process (no thread per message); leaving it first cancels them if they have
not started. Due ones are sent from a small pool (they wait on Facebook, the timer must not), in
order, each best effort (a failed one stops the rest). Leaving the block stops any action not yet
begun and waits for the one in a Send API call, if any (at most one Send API timeout), so
``typing_on`` never lands after the reply. Only on
a message's first attempt: a re-run has shown them already, or was too late to matter.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from django.conf import settings
from django.db import connections

from messenger import send_api
from messenger.models import InboundMessage

logger = logging.getLogger("messenger.pipeline")

ACTIONS = ("mark_seen", "typing_on")
# Threads that send due actions, at least this many; one per message a worker process answers at once
# (MESSENGER_WORKER_CONCURRENCY): a due action must not queue behind others while its reply waits.
POOL_MIN_SIZE = 4


class _Actions:
    """The sender actions of one message: due on the timer, each sent unless the reply is ready first."""

    def __init__(self, inbound: InboundMessage) -> None:
        self.inbound = inbound
        self._lock = threading.Lock()
        self._reply_ready = False
        self._in_call = False
        self.done = threading.Event()

    def start(self) -> bool:
        """The timer's side: ``True`` when the actions are still wanted (the reply is not ready yet)."""
        with self._lock:
            return not self._reply_ready

    def cancel(self) -> bool:
        """The reply's side: no action starts from now on. ``True`` when none is in a Send API call;
        ``False`` when one is (the caller waits for :attr:`done`)."""
        with self._lock:
            self._reply_ready = True
            return not self._in_call

    def send(self) -> None:
        try:
            context = self.inbound.log_fields()
            for action in ACTIONS:
                with self._lock:
                    if self._reply_ready:
                        return  # the reply is ready: "typing" now would only come after it
                    self._in_call = True
                try:
                    result = send_api.send_sender_action(
                        psid=self.inbound.psid, action=action, log_context=context, page_id=self.inbound.page_id
                    )
                finally:
                    with self._lock:
                        self._in_call = False
                if not result.ok:
                    return
        finally:
            self.done.set()
            # The page's token may have been read from the database: give this thread's connection
            # back (to the pool, with DATABASE_POOL_MAX_SIZE), it serves no message.
            connections.close_all()


class _Timer:
    """One thread per process that starts due actions; rebuilt after a fork (rq's work horse)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Actions]] = []
        self._seq = itertools.count()
        self._pid: int | None = None
        self._pool: ThreadPoolExecutor | None = None

    def schedule(self, actions: _Actions, delay_s: float) -> None:
        with self._cond:
            if self._pid != os.getpid():
                # A forked child inherits neither the thread nor a usable pool.
                self._heap = []
                size = max(POOL_MIN_SIZE, settings.MESSENGER_WORKER_CONCURRENCY)
                self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="sender-actions")
                threading.Thread(target=self._run, name="sender-actions-timer", daemon=True).start()
                self._pid = os.getpid()
            heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._seq), actions))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                due, _, actions = self._heap[0]
                wait_s = due - time.monotonic()
                if wait_s > 0:
                    self._cond.wait(wait_s)
                    continue
                heapq.heappop(self._heap)
                pool = self._pool
            if actions.start():
                try:
                    pool.submit(actions.send)
                except RuntimeError:  # the interpreter is shutting down
                    actions.done.set()


_timer = _Timer()


@contextmanager
def sender_actions(inbound: InboundMessage) -> Iterator[None]:
    """Show ``mark_seen`` then ``typing_on`` if the block outlasts ``MESSENGER_TYPING_DELAY_MS``.

    First attempt only; see the module docstring for the order guarantee.
    """
    if inbound.attempts > 1:
        yield
        return
    actions = _Actions(inbound)
    _timer.schedule(actions, max(0, int(settings.MESSENGER_TYPING_DELAY_MS)) / 1000)
    try:
        yield
    finally:
        if not actions.cancel():
            # Under way: let them land before the reply (bounded by the Send API's own timeout).
            actions.done.wait(timeout=len(ACTIONS) * max(1, int(settings.MESSENGER_SEND_TIMEOUT_MS)) / 1000)
