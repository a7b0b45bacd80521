"""Forgetting a user: nothing of theirs is left anywhere, another user is untouched, the audit line."""

from __future__ import annotations

import logging

import pytest

from messenger.forget import ForgetResult, user_forget
from observability.hashing import hash_psid
from tests.messenger.helpers import stored_everywhere, user_footprint

pytestmark = pytest.mark.django_db

PAGE = "1122334455"
PSID = "7000000000000001"
OTHER = "7000000000000002"


def test_forget_leaves_no_row_with_the_psid_or_its_hash(redis_conn):
    made = user_footprint(page_id=PAGE, psid=PSID, conversations=2)
    other = user_footprint(page_id=PAGE, psid=OTHER)
    assert PSID in stored_everywhere() and hash_psid(PSID) in stored_everywhere()

    result = user_forget(page_id=PAGE, psid=PSID, actor="ops@example.test")

    assert result == ForgetResult(inbound=2, parts=2, conversations=2, messages=4, cache_keys=2, events=4)
    everything = stored_everywhere()
    assert PSID not in everything
    assert hash_psid(PSID) not in everything
    assert not any(redis_conn.exists(key) for key in made["cache_keys"])
    # The other user keeps everything.
    assert OTHER in everything and hash_psid(OTHER) in everything
    assert all(redis_conn.exists(key) for key in other["cache_keys"])
    assert user_forget(page_id=PAGE, psid=OTHER, actor="ops") == ForgetResult(
        inbound=1, parts=1, conversations=1, messages=2, cache_keys=1, events=2
    )


def test_forget_keeps_rows_of_another_page_but_drops_every_event_with_the_hash():
    """Rows are per page; events carry only the PSID's hash (no page), so they all go: erasure errs
    on the side of deleting (PSIDs are unique ids in practice, so no one else's events share it)."""
    user_footprint(page_id="another-page", psid=PSID)
    assert user_forget(page_id=PAGE, psid=PSID, actor="ops") == ForgetResult(events=2)
    assert PSID in stored_everywhere()
    assert hash_psid(PSID) not in stored_everywhere()


def test_forget_audit_line_has_page_counts_actor_and_no_psid(caplog):
    user_footprint(page_id=PAGE, psid=PSID)
    with caplog.at_level(logging.DEBUG):
        user_forget(page_id=PAGE, psid=PSID, actor="ops@example.test")
    done = [record for record in caplog.records if record.getMessage() == "messenger.forget.done"]
    assert len(done) == 1
    record = done[0]
    assert (record.name, record.levelno, record.page_id, record.actor) == (
        "messenger.forget",
        logging.INFO,
        PAGE,
        "ops@example.test",
    )
    assert (record.inbound, record.parts, record.conversations, record.messages, record.events) == (1, 1, 1, 2, 2)
    for text in (str(vars(record)), caplog.text):
        assert PSID not in text and hash_psid(PSID) not in text


def test_forget_needs_page_and_psid():
    with pytest.raises(ValueError):
        user_forget(page_id=PAGE, psid="", actor="ops")
