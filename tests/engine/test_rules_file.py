"""The rules file: validation with a message that names the place, and re-reading staff edits."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from engine.rules import RulesEngine
from engine.rules_file import RulesFileError, rules_load
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
    """A malformed rules file raises RulesFileError naming the file and the exact problem."""
    path = write(tmp_path / "rules.json", content)
    with pytest.raises(RulesFileError) as excinfo:
        RulesEngine(path=path)
    message = str(excinfo.value)
    assert str(path) in message
    assert fragment in message


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
