"""The rules engine: matching order, history use, and what an answer carries from the data file."""

from __future__ import annotations

import json
import logging

import pytest

from engine import rules as rules_module
from engine.rules import RulesEngine
from engine.types import Button, Card, HistoryItem, QuickReply
from tests.engine.helpers import SHIPPED, ctx, minimal_rules, write


@pytest.fixture
def engine() -> RulesEngine:
    return RulesEngine(path=SHIPPED)


@pytest.fixture
def shipped() -> dict:
    return json.loads(SHIPPED.read_text())


def answers_of(data: dict, name: str) -> list[str]:
    return next(intent for intent in data["intents"] if intent["name"] == name)["answers"]


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Hello!", "greeting"),
        ("good morning", "greeting"),
        ("Can you help me?", "help"),
        ("thanks a lot", "thanks"),
        ("Thank you", "thanks"),
        ("ok bye for now", "goodbye"),
        ("I want to talk to a human please", "human"),
        ("can I speak to someone", "human"),
        ("show me the menu", "menu"),
    ],
)
def test_text_matches_each_intent(engine, shipped, text, intent):
    """Each intent of the shipped file is recognised from a typical phrasing, case-insensitively."""
    reply = engine.reply(ctx(text))
    assert reply.intent == intent
    assert reply.text == answers_of(shipped, intent)[0]
    assert 0.0 < reply.confidence <= 1.0
    assert reply.fallback is False


def test_text_whole_message_match_has_higher_confidence(engine):
    """A pattern covering the whole message scores 0.9, one inside a longer message 0.7."""
    assert engine.reply(ctx("Hello!")).confidence == 0.9
    assert engine.reply(ctx("hello, is anybody there")).confidence == 0.7


@pytest.mark.parametrize("text", ["this is it", "which one", "philosophy", "shine"])
def test_text_word_boundaries_prevent_partial_word_matches(engine, text):
    """'hi' inside 'this' or 'which' is not a greeting: patterns match whole words only."""
    reply = engine.reply(ctx(text))
    assert reply.intent == "fallback"


def test_text_earlier_intent_in_file_wins(engine):
    """When two intents match, the one listed first answers ('hi, ... human' asks for a person)."""
    assert engine.reply(ctx("hi, can I talk to a human?")).intent == "human"


def test_payload_matched_before_text(engine, shipped):
    """A mapped payload decides the intent even when the text would match another one."""
    reply = engine.reply(ctx("bye", payload="HELP"))
    assert reply.intent == "help"
    assert reply.confidence == 1.0
    assert reply.text == answers_of(shipped, "help")[0]


def test_payload_unknown_falls_back_to_text(engine):
    """A payload the file does not map is ignored and the text is matched as usual."""
    reply = engine.reply(ctx("thanks", payload="SOMETHING_ELSE"))
    assert reply.intent == "thanks"


def test_get_started_greets_new_user(engine, shipped):
    """The Get Started payload greets a new user with the greeting and its quick replies."""
    reply = engine.reply(ctx("Get Started", payload="GET_STARTED", new=True))
    assert reply.intent == "greeting"
    assert reply.confidence == 1.0
    assert reply.text == answers_of(shipped, "greeting")[0]
    assert reply.quick_replies == (
        QuickReply(title="What can you do?", payload="HELP"),
        QuickReply(title="Talk to a person", payload="TALK_TO_HUMAN"),
    )


def test_greeting_not_repeated_in_same_conversation(engine, shipped):
    """A second greeting in one conversation gets the 'Hi again' answer, intent greeting_repeat."""
    history = [
        HistoryItem(direction="in", text="hello"),
        HistoryItem(direction="out", text=answers_of(shipped, "greeting")[0], intent="greeting"),
        HistoryItem(direction="in", text="thanks"),
        HistoryItem(direction="out", text="You're welcome!", intent="thanks"),
    ]
    reply = engine.reply(ctx("hey", history=history))
    assert reply.intent == "greeting_repeat"
    assert reply.text == "Hi again! How can I help?"
    assert reply.text not in answers_of(shipped, "greeting")


def test_greeting_repeat_detected_from_text_without_intent(engine, shipped):
    """History items without an intent still count: the greeting's text is recognised."""
    history = [HistoryItem(direction="out", text=answers_of(shipped, "greeting")[1])]
    assert engine.reply(ctx("hello", history=history)).intent == "greeting_repeat"


def test_get_started_after_greeting_not_repeated(engine):
    """Tapping Get Started in a conversation that was already greeted does not greet again."""
    history = [HistoryItem(direction="out", text="Hi there! What can I do for you?", intent="greeting")]
    assert engine.reply(ctx(payload="GET_STARTED", history=history)).intent == "greeting_repeat"


def test_greeting_new_conversation_greets_again(engine):
    """History from an earlier conversation does not stop the greeting of a new one."""
    history = [HistoryItem(direction="out", text="Hi there! What can I do for you?", intent="greeting")]
    assert engine.reply(ctx("hello", history=history, new=True)).intent == "greeting"


def test_answers_rotate_never_twice_in_a_row(engine, shipped):
    """With several answers, the one after the last given is chosen, wrapping around."""
    thanks = answers_of(shipped, "thanks")
    for index, previous in enumerate(thanks):
        history = [HistoryItem(direction="out", text=previous, intent="thanks")]
        reply = engine.reply(ctx("thanks", history=history))
        assert reply.text == thanks[(index + 1) % len(thanks)]
        assert reply.text != previous


def test_fallback_when_nothing_matches(engine, shipped):
    """Unmatched text gets the file's fallback answer, intent 'fallback', confidence 0."""
    reply = engine.reply(ctx("qwertyuiop"))
    assert reply.intent == "fallback"
    assert reply.confidence == 0.0
    assert reply.text == shipped["fallback"]["answers"][0]
    assert reply.quick_replies == (
        QuickReply(title="What can you do?", payload="HELP"),
        QuickReply(title="Talk to a person", payload="TALK_TO_HUMAN"),
    )
    assert reply.metadata["matched"] == "none"


def test_fallback_empty_text_without_payload(engine):
    """An empty message (an attachment without text, say) gets the fallback, not an error."""
    assert engine.reply(ctx("")).intent == "fallback"


def test_buttons_attached_from_data_file(engine):
    """The menu intent carries the file's postback and web_url buttons."""
    reply = engine.reply(ctx(payload="MENU"))
    assert reply.intent == "menu"
    assert reply.text == "What would you like to do?"
    assert reply.buttons == (
        Button(title="What can you do?", type="postback", payload="HELP"),
        Button(title="Talk to a person", type="postback", payload="TALK_TO_HUMAN"),
        Button(title="Visit our website", type="web_url", url="https://www.example.com/"),
    )


def test_quick_replies_attached_from_data_file(engine):
    """The help intent carries the file's quick replies, in order."""
    reply = engine.reply(ctx("help"))
    assert reply.quick_replies == (
        QuickReply(title="Talk to a person", payload="TALK_TO_HUMAN"),
        QuickReply(title="Show the menu", payload="MENU"),
    )


def test_cards_and_inline_payload_answer(tmp_path):
    """A payload may map to an inline answer, and answers may carry cards with buttons."""
    data = minimal_rules(
        payloads={
            "PRODUCTS": {
                "intent": "products",
                "answers": ["Our products:"],
                "cards": [
                    {
                        "title": "Shirt",
                        "subtitle": "Cotton",
                        "image_url": "https://example.com/shirt.png",
                        "buttons": [{"type": "web_url", "title": "Buy", "url": "https://example.com/buy"}],
                    }
                ],
            }
        }
    )
    engine = RulesEngine(path=write(tmp_path / "rules.json", data))
    reply = engine.reply(ctx("whatever", payload="PRODUCTS"))
    assert reply.intent == "products"
    assert reply.confidence == 1.0
    assert reply.text == "Our products:"
    assert reply.cards == (
        Card(
            title="Shirt",
            subtitle="Cotton",
            image_url="https://example.com/shirt.png",
            buttons=(Button(title="Buy", type="web_url", url="https://example.com/buy"),),
        ),
    )


def test_reply_never_raises_on_internal_error(engine, monkeypatch, caplog):
    """An unexpected error inside matching still answers, with fallback=True, and is logged."""

    def boom(**_kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(rules_module, "rules_reply", boom)
    with caplog.at_level(logging.ERROR, logger="chatbot.engine.rules"):
        reply = engine.reply(ctx("hello"))
    assert reply.fallback is True
    assert reply.intent == "fallback"
    assert reply.confidence == 0.0
    assert reply.text == json.loads(SHIPPED.read_text())["fallback"]["answers"][0]
    assert [r.getMessage() for r in caplog.records] == ["chatbot.engine.rules-failed"]
