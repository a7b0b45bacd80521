"""Tests for messenger/outbound.py: what a part says, read from its Send API body in one place."""

from __future__ import annotations

import json

from engine.types import Button, Card, QuickReply, Reply
from messenger.formatter import format_reply
from messenger.management.commands.messenger_simulate import render_part
from messenger.outbound import part_summary

QUICK = [{"content_type": "text", "title": "Yes", "payload": "Y"}]
BUTTONS = [{"type": "postback", "title": "Menu", "payload": "MENU"}]
CARDS = [{"title": "Shoe", "subtitle": "42", "buttons": [{"type": "postback", "title": "Buy", "payload": "B"}]}]


def _template(payload: dict, **extra) -> dict:
    return {"attachment": {"type": "template", "payload": payload}, **extra}


def test_part_summary_of_text_with_quick_replies():
    """A text part is its text; its quick replies are the structured record."""
    assert part_summary({"text": "hello", "quick_replies": QUICK}) == ("hello", {"quick_replies": QUICK})
    assert part_summary({"text": "plain"}) == ("plain", {})


def test_part_summary_of_button_template_is_its_text_and_buttons():
    """A button template reads as its text, with its buttons."""
    body = _template({"template_type": "button", "text": "Pick", "buttons": BUTTONS})
    assert part_summary(body) == ("Pick", {"buttons": BUTTONS})


def test_part_summary_of_generic_template_is_cards_without_text():
    """A carousel has no text of its own: its elements are the cards, quick replies kept."""
    body = _template({"template_type": "generic", "elements": CARDS}, quick_replies=QUICK)
    assert part_summary(body) == ("", {"quick_replies": QUICK, "cards": CARDS})


def test_part_summary_of_another_shape_is_empty_not_an_error():
    """An attachment that is not a template, or an empty body, gives no text and no record."""
    assert part_summary({"attachment": {"type": "image", "payload": {"url": "https://x"}}}) == ("", {})
    assert part_summary({}) == ("", {})


def test_part_summary_of_a_formatted_reply_is_json_shaped():
    """The stored record of a reply's offers is plain JSON (lists, dicts) and survives a round trip."""
    reply = Reply(
        text="x",
        quick_replies=(QuickReply(title="Yes", payload="Y"),),
        cards=(Card(title="Shoe", buttons=(Button(title="Buy", payload="B"),)),),
    )
    summaries = [part_summary(body) for body in format_reply(reply)]
    assert [text for text, _ in summaries] == ["x", ""]
    cards_record = summaries[-1][1]
    assert cards_record["quick_replies"] == [{"content_type": "text", "title": "Yes", "payload": "Y"}]
    assert [c["title"] for c in cards_record["cards"]] == ["Shoe"]
    assert json.loads(json.dumps(summaries)) == [list(s) for s in summaries]


def test_simulate_renders_what_the_summary_says():
    """messenger_simulate prints the part as the transcript records it: text, buttons, cards, quick replies."""
    body = _template({"template_type": "button", "text": "Pick", "buttons": BUTTONS}, quick_replies=QUICK)
    assert render_part(body) == ["Pick", "  [Menu] -> MENU", "  quick replies: [Yes]"]
    cards = _template({"template_type": "generic", "elements": CARDS})
    assert render_part(cards) == ["  | Shoe - 42", "  |   [Buy] -> B"]
