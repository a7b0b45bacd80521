"""The rules file: validation with a message that names the place, and re-reading staff edits."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from engine.rules import RulesEngine
from engine.rules_file import RulesFileError, rules_load
from engine.types import NO_LIMITS, ReplyLimits
from messenger.limits import REPLY_LIMITS
from tests.engine.helpers import SHIPPED, ctx, minimal_rules, write


def test_shipped_file_defines_required_intents_and_payloads():
    """The shipped file has the intents and payloads the channel and the profile rely on."""
    rules = rules_load(path=SHIPPED)
    names = {intent.name for intent in rules.intents}
    assert {"greeting", "help", "thanks", "goodbye", "human"} <= names
    assert {"GET_STARTED", "HELP", "TALK_TO_HUMAN", "MENU"} <= set(rules.payloads)
    assert rules.payloads["GET_STARTED"].name == "greeting"
    assert rules.fallback.answers


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (
            "{not json",
            "is not valid JSON: Expecting property name enclosed in double quotes at line 1, column 2",
        ),
        (minimal_rules(version=2), "at version: 2 is not supported"),
        (
            minimal_rules(intents=[{"name": "x", "patterns": ["(unclosed"], "answers": ["a"]}]),
            "at intents[0] (\"x\").patterns[0]: '(unclosed' is not a valid regular expression "
            "(missing ), unterminated subpattern at position 0)",
        ),
        (
            minimal_rules(intents=[{"name": "x", "patterns": ["(hi)?"], "answers": ["a"]}]),
            "at intents[0] (\"x\").patterns[0]: '(hi)?' matches an empty text, "
            "so it would match every message",
        ),
        (
            minimal_rules(intents=[{"name": "x", "pattern": ["hi"], "answers": ["a"]}]),
            "at intents[0]: unknown key(s) ['pattern']",
        ),
        (
            minimal_rules(intents=[{"name": "x", "patterns": ["hi"]}]),
            'at intents[0] ("x"): needs at least one',
        ),
        (
            minimal_rules(payloads={"HELP": "help"}),
            "at payloads.HELP: names intent 'help', which the file does not define",
        ),
        (
            minimal_rules(
                intents=[{"name": "x", "answers": ["a"], "buttons": [{"type": "web_url", "title": "Go"}]}]
            ),
            'at intents[0] ("x").buttons[0].url: expected a non-empty string',
        ),
        (
            minimal_rules(
                intents=[
                    {
                        "name": "x",
                        "answers": ["a"],
                        "quick_replies": [{"title": f"q{i}", "payload": f"P{i}"} for i in range(14)],
                    }
                ]
            ),
            "quick_replies: has 14 items; Messenger allows at most 13",
        ),
        (
            {k: v for k, v in minimal_rules().items() if k != "fallback"},
            "missing key(s) ['fallback']",
        ),
        (
            minimal_rules(
                intents=[
                    {"name": "x", "patterns": ["a"], "answers": ["a"]},
                    {"name": "x", "patterns": ["b"], "answers": ["b"]},
                ]
            ),
            "intent name 'x' is used twice",
        ),
    ],
)
def test_malformed_file_gives_clear_error(tmp_path, content, fragment):
    """A malformed rules file raises RulesFileError naming the file and the exact problem.

    The limits are Messenger's, handed to the engine as ``get_engine`` hands them in production.
    """
    path = write(tmp_path / "rules.json", content)
    with pytest.raises(RulesFileError) as excinfo:
        RulesEngine(path=path, limits=REPLY_LIMITS)
    message = str(excinfo.value)
    assert str(path) in message
    assert fragment in message


def test_rules_file_without_channel_limits_checks_only_its_own_format(tmp_path):
    """Given no channel's limits, the engine accepts as many quick replies as the file lists."""
    many = [{"title": f"q{i}", "payload": f"P{i}"} for i in range(14)]
    path = write(tmp_path / "rules.json", minimal_rules(fallback={"answers": ["Sorry?"], "quick_replies": many}))
    assert len(rules_load(path=path, limits=NO_LIMITS).fallback.quick_replies) == 14


@pytest.mark.parametrize(
    ("response", "fragment"),
    [
        ({"answers": ["a"], "buttons": [{"title": "b", "payload": "B"}] * 2}, "buttons: has 2 items"),
        ({"cards": [{"title": "c", "subtitle": "s"}] * 2}, "cards: has 2 items"),
        (
            {"cards": [{"title": "c", "buttons": [{"title": "b", "payload": "B"}] * 2}]},
            "cards[0].buttons: has 2 items",
        ),
    ],
)
def test_rules_file_checked_against_the_limits_it_is_given(tmp_path, response, fragment):
    """Each limit a channel gives is checked, and the error names that channel."""
    limits = ReplyLimits(channel="TestChat", quick_replies=1, buttons=1, card_buttons=1, cards=1)
    path = write(tmp_path / "rules.json", minimal_rules(intents=[{"name": "x", "patterns": ["x"], **response}]))
    with pytest.raises(RulesFileError) as excinfo:
        rules_load(path=path, limits=limits)
    assert f"{fragment}; TestChat allows at most 1" in str(excinfo.value)


def test_missing_file_gives_clear_error(tmp_path):
    """A rules file that does not exist is named in the error."""
    with pytest.raises(RulesFileError, match="cannot be read"):
        rules_load(path=tmp_path / "nope.json")


def bump_mtime(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_reload_applies_edits_without_restart(tmp_path):
    """Changing the file (a new mtime) changes the answers of the same engine instance."""
    path = write(tmp_path / "rules.json", minimal_rules())
    engine = RulesEngine(path=path)
    assert engine.reply(ctx("hello")).text == "Hello!"
    write(path, minimal_rules(intents=[{"name": "greeting", "patterns": ["hello"], "answers": ["Howdy!"]}]))
    bump_mtime(path)
    assert engine.reply(ctx("hello")).text == "Howdy!"


def test_reload_broken_edit_keeps_last_good_rules(tmp_path, caplog):
    """A broken edit is logged once and the last good rules keep answering."""
    path = write(tmp_path / "rules.json", minimal_rules())
    engine = RulesEngine(path=path)
    write(path, "{broken")
    bump_mtime(path)
    with caplog.at_level(logging.ERROR, logger="chatbot.engine.rules"):
        assert engine.reply(ctx("hello")).text == "Hello!"
        assert engine.reply(ctx("hello")).text == "Hello!"
    failures = [r for r in caplog.records if r.getMessage() == "chatbot.engine.rules-reload-failed"]
    assert len(failures) == 1
    assert "is not valid JSON" in failures[0].error
