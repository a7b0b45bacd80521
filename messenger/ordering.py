"""One sender at a time: a Redis lock per sender, kept alive by a heartbeat while a worker holds it.

Messages of one user must be answered one after another in the order of their timestamps, across
any number of workers. The job that holds a sender's lock answers all of that sender's open
messages, earliest first (see ``messenger.pipeline.sender_drain``); a job that can't get the lock
leaves its message to the holder.

The heartbeat thread renews the lock and an "in flight" key for the message being processed every
``MESSENGER_LEASE_SECONDS / 5`` seconds, with that lease as TTL. A worker killed outright (SIGKILL,
OOM) stops renewing: within the lease its lock is free for the next job of that sender and the recovery sweep
sees the message as stranded (``messenger.inbox.inbox_requeue``). A live worker that is merely slow
keeps both keys alive, so nobody takes its message away from it.

A holder that can't prove it still holds the lock must stop before its next send (:meth:`SenderLock.held`):
the lock counts as lost as soon as Redis says so (a renewal finds another token, or no key: Redis
restarted empty) *and* locally, once the time since the last successful renewal exceeds the lease on
the monotonic clock (Redis slow or unreachable, the process paused by SIGSTOP or a long GC): by then
Redis may have let the key expire and another worker may have taken the sender.

A worker with many messages in flight (``messenger.thread_worker``) stops them together: on a
graceful stop :func:`drains_wind_down` tells every drain to hand on its sender's remaining messages
after the one in hand, and before the process exits with messages still in flight
:func:`leases_revoke` makes every lock it holds count as lost, so no thread starts a send again
after their messages are put back; it first lets the Send API calls already on the wire land and be
recorded (:func:`send_on_the_wire`, :func:`sends_settle`), so their parts are not left in doubt.

This module owns both keys: nobody else formats them. The recovery sweep asks
:func:`sender_lock_held` and :func:`inflight_alive`; a worker putting back the message of a job it
stopped frees them with :func:`sender_lease_drop`. All go through the channel's Redis
(``messenger.queues.channel_redis``).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from django.conf import settings

from messenger.queues import channel_redis

logger = logging.getLogger("messenger.ordering")

# Alive while a worker holds the sender: the value is the holder's token, the TTL the lease.
_LOCK_KEY = "messenger:sender-lock:{page_id}:{psid}"
# Alive while a worker processes the message; its absence means the worker died (or let go).
_INFLIGHT_KEY = "messenger:inflight:{id}"


# Process-wide: set once when a stopping worker gives its messages up (see the module docstring).
_leases_revoked = threading.Event()
_winding_down = threading.Event()


def leases_revoke() -> None:
    """From now on every lock of this process counts as lost: its holders send nothing more."""
    _leases_revoked.set()


def drains_wind_down() -> None:
    """This process is stopping: drains finish the message in hand and hand on the rest."""
    _winding_down.set()


def drains_winding_down() -> bool:
    """Whether this process is stopping (:func:`drains_wind_down` was called)."""
    return _winding_down.is_set()


_sends = threading.Condition()
_sends_on_the_wire = 0


@contextmanager
def send_on_the_wire() -> Iterator[None]:
    """Around a Send API call and the write of its outcome: a worker about to exit with messages in
    flight lets these land (:func:`sends_settle`) instead of leaving their parts in doubt."""
    global _sends_on_the_wire
    with _sends:
        _sends_on_the_wire += 1
    try:
        yield
    finally:
        with _sends:
            _sends_on_the_wire -= 1
            _sends.notify_all()


def sends_settle(timeout_s: float) -> int:
    """Wait up to ``timeout_s`` for the sends on the wire to land and be recorded; how many are left."""
    deadline = time.monotonic() + timeout_s
    with _sends:
        while _sends_on_the_wire and time.monotonic() < deadline:
            _sends.wait(timeout=max(0.0, deadline - time.monotonic()))
        return _sends_on_the_wire


def _monotonic() -> float:
    """The clock of the lease's local expiry (tests move it to play a paused process)."""
    return time.monotonic()


def _lock_key(page_id: str, psid: str) -> str:
    return _LOCK_KEY.format(page_id=page_id, psid=psid)


def _inflight_key(inbound_id: int) -> str:
    return _INFLIGHT_KEY.format(id=inbound_id)


def sender_lock_held(*, page_id: str, psid: str) -> bool:
    """Whether a live worker holds this sender (its lease has not lapsed)."""
    return bool(channel_redis().exists(_lock_key(page_id, psid)))


def inflight_alive(*, inbound_id: int) -> bool:
    """Whether a live worker is processing this message (its heartbeat keeps the key alive)."""
    return bool(channel_redis().exists(_inflight_key(inbound_id)))


def sender_lease_drop(*, page_id: str, psid: str, inbound_id: int) -> None:
    """Free the sender's lock and the message's in-flight key, whoever holds them.

    Only for a job known to be dead or frozen for good (a worker putting back the message its stopped
    job was answering): the next worker can start at once instead of waiting out the lease.
    """
    channel_redis().delete(_lock_key(page_id, psid), _inflight_key(inbound_id))


# Renew (or release) only a lock we still own: a lock that expired and was taken by another worker
# must not be extended or deleted by the old owner.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class SenderLock:
    """The lock on one sender's messages, with a heartbeat thread while held."""

    def __init__(self, connection: redis.Redis | None = None, *, page_id: str, psid: str, owner: str = "") -> None:
        self.connection = connection if connection is not None else channel_redis()
        self.key = _lock_key(page_id, psid)
        self.token = f"{owner or 'worker'}:{secrets.token_hex(8)}"
        self._inflight_id: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self.lost = False
        self.lease_s = max(1, settings.MESSENGER_LEASE_SECONDS)
        self.heartbeat_s = self.lease_s / 5
        self._renewed_at = 0.0  # time.monotonic() just before the last successful SET/renewal

    def acquire(self) -> bool:
        """Take the lock if free; start the heartbeat. Never blocks."""
        self.lease_s = max(1, settings.MESSENGER_LEASE_SECONDS)
        self.heartbeat_s = self.lease_s / 5
        asked_at = _monotonic()
        if not self.connection.set(self.key, self.token, nx=True, ex=self.lease_s):
            return False
        self._renewed_at = asked_at
        self.lost = False
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {self.key}", daemon=True)
        self._thread.start()
        return True

    def held(self) -> bool:
        """Whether this worker can still prove it holds the lock (see the module docstring).

        Asked before every send; once it says no, it keeps saying no.
        """
        if not self.lost and _leases_revoked.is_set():
            self.lost = True
            logger.warning("messenger.ordering.lease-revoked", extra={"lock": self.key})
        if not self.lost and _monotonic() - self._renewed_at > self.lease_s:
            self.lost = True
            logger.error("messenger.ordering.lease-expired-locally", extra={"lock": self.key})
        return not self.lost

    def set_inflight(self, inbound_id: int | None) -> None:
        """Mark ``inbound_id`` as in flight under this lock (``None`` clears it)."""
        with self._guard:
            previous, self._inflight_id = self._inflight_id, inbound_id
            pipe = self.connection.pipeline()
            if previous is not None and previous != inbound_id:
                pipe.delete(_inflight_key(previous))
            if inbound_id is not None:
                pipe.set(_inflight_key(inbound_id), self.token, ex=self.lease_s)
            pipe.execute()

    def _beat(self) -> None:
        lease_ms = self.lease_s * 1000
        while not self._stop.wait(self.heartbeat_s):
            try:
                with self._guard:
                    asked_at = _monotonic()
                    if not self.connection.eval(_RENEW, 1, self.key, self.token, lease_ms):
                        self.lost = True
                        logger.error("messenger.ordering.lock-lost", extra={"lock": self.key})
                        return
                    if not self.lost:
                        self._renewed_at = asked_at
                    if self._inflight_id is not None:
                        self.connection.set(_inflight_key(self._inflight_id), self.token, ex=self.lease_s)
            except redis.RedisError as exc:
                # Keep beating: a short Redis outage must not end the lease early.
                logger.warning("messenger.ordering.heartbeat-failed", extra={"error": type(exc).__name__})

    def release(self) -> None:
        """Stop the heartbeat and free the lock and the in-flight key, if still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_s + 1)
        try:
            # The in-flight key and the lock go in one round trip.
            with self._guard:
                previous, self._inflight_id = self._inflight_id, None
                pipe = self.connection.pipeline(transaction=False)
                if previous is not None:
                    pipe.delete(_inflight_key(previous))
                pipe.eval(_RELEASE, 1, self.key, self.token)
                pipe.execute()
        except redis.RedisError as exc:
            # The lease runs out by itself; the next job of this sender waits that long at most.
            logger.warning("messenger.ordering.release-failed", extra={"error": type(exc).__name__})
