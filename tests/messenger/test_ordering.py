"""Tests for messenger/ordering.py: the sender lock, its heartbeat, and the keys it owns."""

from __future__ import annotations

import time

import pytest

from messenger.ordering import SenderLock, inflight_alive, sender_lease_drop, sender_lock_held
from messenger.queues import channel_redis

PAGE, PSID = "page-1", "psid-1"


@pytest.fixture
def lease(settings):
    """A one-second lease (heartbeat every 0.2 s), so expiry and renewal are seen quickly."""
    settings.MESSENGER_LEASE_SECONDS = 1
    return 1


def test_sender_lock_is_exclusive_until_released():
    """A second lock on the same sender is refused while the first is held, and granted after release."""
    first = SenderLock(page_id=PAGE, psid=PSID, owner="w1")
    second = SenderLock(page_id=PAGE, psid=PSID, owner="w2")
    assert first.acquire()
    try:
        assert not second.acquire()
        assert sender_lock_held(page_id=PAGE, psid=PSID)
    finally:
        first.release()
    assert not sender_lock_held(page_id=PAGE, psid=PSID)
    assert second.acquire()
    second.release()


def test_sender_lock_of_another_sender_is_independent():
    """Locks are per sender: holding one user's lock does not block another user's."""
    mine = SenderLock(page_id=PAGE, psid=PSID)
    theirs = SenderLock(page_id=PAGE, psid="psid-2")
    assert mine.acquire() and theirs.acquire()
    mine.release()
    theirs.release()


def test_set_inflight_marks_one_message_at_a_time():
    """Moving the in-flight mark to the next message clears the previous one; None clears it."""
    lock = SenderLock(page_id=PAGE, psid=PSID)
    assert lock.acquire()
    try:
        lock.set_inflight(1)
        assert inflight_alive(inbound_id=1)
        lock.set_inflight(2)
        assert not inflight_alive(inbound_id=1) and inflight_alive(inbound_id=2)
        lock.set_inflight(None)
        assert not inflight_alive(inbound_id=2)
    finally:
        lock.release()


def test_release_clears_lock_and_inflight_key():
    """Releasing frees the sender and its message in flight at once."""
    lock = SenderLock(page_id=PAGE, psid=PSID)
    assert lock.acquire()
    lock.set_inflight(7)
    lock.release()
    assert not sender_lock_held(page_id=PAGE, psid=PSID)
    assert not inflight_alive(inbound_id=7)


def test_heartbeat_keeps_lock_alive_past_its_lease(lease):
    """A live holder keeps the lock and the in-flight key beyond one lease."""
    lock = SenderLock(page_id=PAGE, psid=PSID)
    assert lock.acquire()
    try:
        lock.set_inflight(3)
        time.sleep(lease * 1.6)
        assert sender_lock_held(page_id=PAGE, psid=PSID)
        assert inflight_alive(inbound_id=3)
        assert not lock.lost
    finally:
        lock.release()


def test_lock_taken_over_after_expiry_is_lost_and_not_released_by_old_owner(lease):
    """A holder whose lock was taken by another is marked lost and never deletes the new holder's lock."""
    old = SenderLock(page_id=PAGE, psid=PSID, owner="old")
    assert old.acquire()
    # Simulate the lease lapsing and another worker taking the sender.
    channel_redis().set(old.key, "someone-else", ex=30)
    deadline = time.monotonic() + 3
    while not old.lost and time.monotonic() < deadline:
        time.sleep(0.05)
    assert old.lost
    old.release()
    assert channel_redis().get(old.key) == b"someone-else"


def test_sender_lease_drop_frees_lock_and_inflight_whoever_holds_them():
    """The put-back of a stopped job frees its sender and message at once, without the holder's token."""
    lock = SenderLock(page_id=PAGE, psid=PSID, owner="dead-worker")
    assert lock.acquire()
    lock.set_inflight(9)
    lock._stop.set()  # the holder is frozen: no more heartbeats
    sender_lease_drop(page_id=PAGE, psid=PSID, inbound_id=9)
    assert not sender_lock_held(page_id=PAGE, psid=PSID)
    assert not inflight_alive(inbound_id=9)
    assert SenderLock(page_id=PAGE, psid=PSID).acquire()


def test_lock_and_inflight_keys_keep_their_names():
    """The key names are what the sweep, the worker and ops read in Redis: they must not drift."""
    lock = SenderLock(page_id=PAGE, psid=PSID)
    assert lock.acquire()
    try:
        lock.set_inflight(11)
        keys = sorted(k.decode() for k in channel_redis().keys("messenger:*"))
    finally:
        lock.release()
    assert keys == ["messenger:inflight:11", f"messenger:sender-lock:{PAGE}:{PSID}"]


def test_lease_lost_locally_once_renewals_are_older_than_the_lease(lease, monkeypatch):
    """Redis unreachable, or the process paused past its lease: no renewal succeeded for longer than
    the lease, so the holder can't prove it holds the lock, whatever Redis will say later."""
    from messenger import ordering

    lock = SenderLock(page_id=PAGE, psid=PSID)
    assert lock.acquire()
    try:
        assert lock.held()
        lock._stop.set()  # no more renewals, as when every renewal fails
        lock._thread.join()
        later = time.monotonic() + lease + 0.01
        monkeypatch.setattr(ordering, "_monotonic", lambda: later)
        assert not lock.held() and lock.lost
    finally:
        lock.release()


def test_lease_lost_when_redis_restarted_empty(lease):
    """The lock key vanished (Redis restarted without its data): the next renewal finds no key and the
    holder counts the lock as lost rather than carrying on."""
    lock = SenderLock(page_id=PAGE, psid=PSID)
    assert lock.acquire()
    try:
        channel_redis().delete(lock.key)
        deadline = time.monotonic() + 3
        while lock.held() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not lock.held()
        assert not sender_lock_held(page_id=PAGE, psid=PSID)  # never recreated by the old holder
    finally:
        lock.release()
