"""``messenger_forget``: the exact counts it prints, and no PSID in its output or its audit line."""

from __future__ import annotations

import logging
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from observability.hashing import hash_psid
from tests.messenger.helpers import stored_everywhere, user_footprint

pytestmark = pytest.mark.django_db

PAGE = "1122334455"
PSID = "7000000000000001"


def test_forget_command_prints_exact_counts_and_no_psid(caplog):
    user_footprint(page_id=PAGE, psid=PSID, conversations=2)
    user_footprint(page_id=PAGE, psid="7000000000000002")
    out = StringIO()
    with caplog.at_level(logging.INFO):
        call_command("messenger_forget", "--page", PAGE, "--psid", PSID, "--actor", "ops", stdout=out)
    assert out.getvalue().splitlines() == [
        f"forgot one user of page {PAGE}:",
        "deleted 2 inbound",
        "deleted 2 parts",
        "deleted 2 conversations",
        "deleted 4 messages",
        "deleted 2 cache_keys",
        "deleted 4 events",
    ]
    assert PSID not in out.getvalue() + caplog.text
    assert hash_psid(PSID) not in caplog.text
    assert PSID not in stored_everywhere()
    assert "7000000000000002" in stored_everywhere()
    [audit] = [r for r in caplog.records if r.getMessage() == "messenger.forget.done"]
    assert audit.actor == "ops"


def test_forget_command_default_actor_is_the_os_user(caplog):
    with caplog.at_level(logging.INFO):
        call_command("messenger_forget", "--page", PAGE, "--psid", PSID, stdout=StringIO())
    [audit] = [r for r in caplog.records if r.getMessage() == "messenger.forget.done"]
    assert audit.actor.startswith("command:")


def test_forget_command_refuses_an_empty_psid():
    with pytest.raises(CommandError):
        call_command("messenger_forget", "--page", PAGE, "--psid", " ", stdout=StringIO())
