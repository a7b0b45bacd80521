"""Tests for messenger/limits.py: Facebook's limits reach the chat engine, which may not import them."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from engine import get_engine, reply_limits
from engine.rules_file import RulesFileError, rules_load
from messenger import limits
from tests.engine.helpers import SHIPPED

pytestmark = pytest.mark.usefixtures("fresh_engine")


def test_reply_limits_are_the_formatters_limits():
    """What the engine is told is exactly what the formatter enforces, from the same constants."""
    assert limits.REPLY_LIMITS.channel == "Messenger"
    assert limits.REPLY_LIMITS.quick_replies == limits.MAX_QUICK_REPLIES == 13
    assert limits.REPLY_LIMITS.buttons == limits.MAX_BUTTONS == 3
    assert limits.REPLY_LIMITS.card_buttons == limits.MAX_CARD_BUTTONS == 3
    assert limits.REPLY_LIMITS.cards == limits.MAX_CARDS == 10


def test_messenger_registers_its_limits_with_the_engine():
    """Once the app is ready, the engine get_engine() builds checks its rules file against Messenger's limits."""
    assert reply_limits() == limits.REPLY_LIMITS
    assert get_engine().limits == limits.REPLY_LIMITS


def test_shipped_rules_file_fits_messenger():
    """The rules file that ships with the engine is within every limit Messenger gives."""
    rules_load(path=SHIPPED, limits=limits.REPLY_LIMITS)


def test_rules_file_over_a_messenger_limit_stops_get_engine(tmp_path):
    """A staff edit with 14 quick replies is refused when the engine is built, naming Messenger's limit."""
    data = json.loads(SHIPPED.read_text())
    data["fallback"]["quick_replies"] = [{"title": f"q{i}", "payload": f"P{i}"} for i in range(14)]
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(data))
    with (
        override_settings(CHATBOT_RULES_FILE=path),
        pytest.raises(RulesFileError, match=r"fallback\.quick_replies: has 14 items; Messenger allows at most 13"),
    ):
        get_engine()
