"""Tests for messenger/window.py: the one rule of how a message may go out, and the Send API's guard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from messenger.window import HumanAgent, Refused, Response, send_policy, tag_problem

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("age", "author", "expected"),
    [
        (timedelta(hours=1), "bot", Response()),
        (timedelta(hours=24), "bot", Response()),
        (timedelta(hours=1), "staff", Response()),
        (timedelta(hours=24), "staff", Response()),
        (timedelta(hours=24, seconds=1), "staff", HumanAgent()),
        (timedelta(days=7), "staff", HumanAgent()),
    ],
)
def test_send_policy_inside_its_window_allows_the_send(age, author, expected):
    """Up to 24 h anyone replies as RESPONSE; from 24 h to 7 days only staff, with HUMAN_AGENT."""
    assert send_policy(last_user_message_at=NOW - age, now=NOW, author=author) == expected


@pytest.mark.parametrize(
    ("age", "author"),
    [(timedelta(hours=24, seconds=1), "bot"), (timedelta(days=6), "bot"), (timedelta(days=7, seconds=1), "staff")],
)
def test_send_policy_outside_its_window_refuses(age, author):
    """The bot never goes past 24 h (no tag for it), staff never past 7 days."""
    assert isinstance(send_policy(last_user_message_at=NOW - age, now=NOW, author=author), Refused)


def test_send_policy_for_a_user_who_never_wrote_refuses():
    """No message from the user means no window at all."""
    policy = send_policy(last_user_message_at=None, now=NOW, author="staff")
    assert policy == Refused("The user has never written to the page, so nothing may be sent to them.")


def test_bot_policy_never_carries_a_tag():
    """Whatever the age, the bot's allowed sends are untagged RESPONSE."""
    for hours in (0, 1, 23, 24):
        policy = send_policy(last_user_message_at=NOW - timedelta(hours=hours), now=NOW, author="bot")
        assert (policy.messaging_type, policy.tag) == ("RESPONSE", None)


@pytest.mark.parametrize(
    ("messaging_type", "tag", "author", "problem"),
    [
        ("RESPONSE", None, "bot", ""),
        ("UPDATE", None, "bot", ""),
        ("MESSAGE_TAG", "HUMAN_AGENT", "staff", ""),
        ("MESSAGE_TAG", "HUMAN_AGENT", "bot", "a bot message never carries a tag"),
        ("MESSAGE_TAG", "ACCOUNT_UPDATE", "staff", "tag 'ACCOUNT_UPDATE' is not allowed (only HUMAN_AGENT)"),
        ("MESSAGE_TAG", None, "staff", "tag None is not allowed (only HUMAN_AGENT)"),
        ("RESPONSE", "HUMAN_AGENT", "staff", "a tag needs messaging_type MESSAGE_TAG, not 'RESPONSE'"),
    ],
)
def test_tag_problem_allows_only_human_agent_by_staff(messaging_type, tag, author, problem):
    """The Send API client's guard: exactly what send_policy can give passes, nothing else."""
    assert tag_problem(messaging_type=messaging_type, tag=tag, author=author) == problem
