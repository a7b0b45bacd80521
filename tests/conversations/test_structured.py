"""Tests of conversations/structured.py: the stored shape of offers and taps."""

from __future__ import annotations

import json

from conversations.structured import structured_from_reply, structured_from_tap
from engine.types import Button, Card, QuickReply, Reply


def test_structured_from_reply_is_json_shaped():
    """The stored form of a reply's offers is plain JSON (lists, dicts) and survives a round trip."""
    reply = Reply(
        text="x",
        quick_replies=(QuickReply(title="Yes", payload="Y"),),
        cards=(Card(title="Shoe", buttons=(Button(title="Buy", payload="B"),)),),
    )

    structured = structured_from_reply(reply=reply)

    assert structured == {
        "quick_replies": [{"title": "Yes", "payload": "Y"}],
        "cards": [
            {
                "title": "Shoe",
                "subtitle": "",
                "image_url": "",
                "buttons": [{"title": "Buy", "type": "postback", "payload": "B", "url": ""}],
            }
        ],
    }
    assert json.loads(json.dumps(structured)) == structured


def test_structured_from_tap_records_payload_title_and_kind():
    """A tap is stored as its payload and title, with the kind when known."""
    assert structured_from_tap(payload="GET_STARTED", title="Get Started", kind="postback") == {
        "payload": "GET_STARTED",
        "title": "Get Started",
        "kind": "postback",
    }
    assert structured_from_tap(payload="Y") == {"payload": "Y", "title": ""}
