"""Tests of conversations/structured.py: the stored shape of taps (offers: tests/messenger/test_outbound.py)."""

from __future__ import annotations

from conversations.structured import structured_from_tap


def test_structured_from_tap_records_payload_title_and_kind():
    """A tap is stored as its payload and title, with the kind when known."""
    assert structured_from_tap(payload="GET_STARTED", title="Get Started", kind="postback") == {
        "payload": "GET_STARTED",
        "title": "Get Started",
        "kind": "postback",
    }
    assert structured_from_tap(payload="Y") == {"payload": "Y", "title": ""}
