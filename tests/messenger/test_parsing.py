"""Tests for messenger/parsing.py: a webhook body into typed events, at the edge.

First ``parse_webhook`` itself on the fixtures and on bodies it must refuse, then through the webhook:
what the parser reads out of a body is what the inbox keeps.
"""

from __future__ import annotations

import re

import pytest

from messenger.models import InboundMessage
from messenger.parsing import (
    EVENT_KEYS,
    Attachment,
    EventKind,
    PayloadError,
    UnsupportedObject,
    normalise_attachment,
    parse_webhook,
    postback_mid,
    unreadable_mid,
)
from tests.conftest import FIXTURES, load_fixture
from tests.messenger.event_fixtures import ACTIONABLE_FIXTURES, IGNORED_FIXTURES


def _only(name: str):
    """The single event of fixture ``name``."""
    (event,) = parse_webhook(load_fixture(name))
    return event


def _item_body(item: dict, *, entry_time: int = 1) -> dict:
    return {"object": "page", "entry": [{"id": "1", "time": entry_time, "messaging": [item]}]}


# --- the dispatch table and the fixtures ------------------------------------------------------------


def test_every_event_kind_has_a_fixture():
    """The dispatch table and the fixtures stay in step: each kind we parse has a real-shaped fixture."""
    covered = set(IGNORED_FIXTURES.values()) | {EventKind.MESSAGE, EventKind.POSTBACK}
    assert set(EVENT_KEYS.values()) | {EventKind.STANDBY, EventKind.ECHO, EventKind.UNKNOWN} <= covered
    for name in [*ACTIONABLE_FIXTURES, *IGNORED_FIXTURES]:
        assert (FIXTURES / f"{name}.json").exists(), name


@pytest.mark.parametrize(("fixture", "kind"), IGNORED_FIXTURES.items())
def test_fixture_parses_as_its_kind_and_is_not_actionable(fixture, kind):
    """Each notification fixture parses to its kind, which the pipeline does not answer."""
    events = parse_webhook(load_fixture(fixture))
    assert events and {event.kind for event in events} == {kind}
    assert not any(event.actionable for event in events)


@pytest.mark.parametrize("fixture", ACTIONABLE_FIXTURES)
def test_actionable_fixture_parses_as_message_or_postback(fixture):
    """User messages and postbacks are actionable and carry a mid (derived for a postback without one)."""
    event = _only(fixture)
    assert event.kind in (EventKind.MESSAGE, EventKind.POSTBACK)
    assert event.actionable and event.mid


# --- parse_webhook ---------------------------------------------------------------------------------


def test_text_message_is_read_into_a_typed_event():
    """Sender, page, text, Facebook's mid and timestamp land in typed fields; the raw item is kept."""
    event = _only("text_message")
    assert (event.kind, event.sender_id, event.page_id, event.text) == (
        EventKind.MESSAGE, "29089347883997073", "516746941531643", "+",
    )
    assert event.mid.startswith("m_ldDGcj2W5w5M")
    assert event.timestamp == 1741510337765
    assert event.raw["message"]["text"] == "+"


def test_quick_reply_keeps_payload_and_text():
    """A tapped quick reply is a message with both its payload and the text shown."""
    event = _only("quick_reply")
    assert (event.kind, event.is_quick_reply, event.payload, event.text) == (
        EventKind.MESSAGE, True, "MY_PAYLOAD", "Red",
    )


def test_postback_without_mid_gets_the_stable_derived_id():
    """A postback without a mid gets postback_mid's id, the same on every delivery."""
    event = _only("postback")
    assert event.kind is EventKind.POSTBACK and event.payload == "MY_PAYLOAD"
    assert event.mid == postback_mid(
        page_id=event.page_id, sender_id=event.sender_id, timestamp=event.timestamp, payload="MY_PAYLOAD"
    )
    assert event.mid.startswith("pb.") and _only("postback").mid == event.mid


def test_batched_body_comes_out_in_timestamp_order_per_sender():
    """Several entries and items out of time order: every event, each sender's in timestamp order."""
    events = parse_webhook(load_fixture("batched_multi_entry"))
    assert len(events) == 5
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    assert events[0].text == "hey" and events[-1].text == "carbon"


def test_equal_timestamps_keep_the_order_of_the_body():
    """Ties are broken by the position in the body, so the sort is stable."""
    items = [
        {"sender": {"id": "2"}, "timestamp": 5, "message": {"mid": f"m{i}", "text": str(i)}} for i in range(3)
    ]
    body = {"object": "page", "entry": [{"id": "1", "time": 5, "messaging": items}]}
    assert [e.mid for e in parse_webhook(body)] == ["m0", "m1", "m2"]


def test_standby_item_is_standby_whatever_it_holds():
    """An item under ``standby`` belongs to another app's thread: its kind is STANDBY even for a message."""
    assert _only("standby").kind is EventKind.STANDBY


def test_echo_is_our_own_message():
    """``is_echo`` marks our own message coming back: an ECHO, not a MESSAGE."""
    assert _only("echo").kind is EventKind.ECHO


def test_numeric_ids_are_read_as_strings_and_entry_time_fills_a_missing_timestamp():
    """Older payloads send numeric ids; an item without timestamp takes its entry's time."""
    (event,) = parse_webhook(_item_body({"sender": {"id": 42}, "delivery": {"mids": []}}, entry_time=1234))
    assert (event.kind, event.sender_id, event.timestamp) == (EventKind.DELIVERY, "42", 1234)


def test_unknown_item_is_unknown_not_an_error():
    """An item with no key we know is UNKNOWN (Facebook adds event types): kept raw, never answered."""
    (event,) = parse_webhook(_item_body({"sender": {"id": "2"}, "timestamp": 1, "brand_new_thing": {}}))
    assert event.kind is EventKind.UNKNOWN and not event.actionable and event.unreadable
    assert event.problem == "entry[0].messaging[0] has no event key we know (brand_new_thing)"


def test_another_products_body_is_unsupported_object():
    """``object`` other than ``page`` (Instagram, WhatsApp) is UnsupportedObject, answered 404 by the view."""
    with pytest.raises(UnsupportedObject):
        parse_webhook({"object": "instagram", "entry": []})


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (["object", "page"], "body"),
        ({"object": 7, "entry": []}, "object"),
        ({"object": "page"}, "entry"),
        ({"object": "page", "entry": {"id": "1"}}, "entry"),
    ],
)
def test_body_of_wrong_shape_is_a_payload_error_naming_the_field(body, path):
    """Only the body itself is refused: not an object, ``object`` not a string, ``entry`` not a list."""
    with pytest.raises(PayloadError, match=re.escape(path)):
        parse_webhook(body)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"object": "page", "entry": ["x"]}, "entry[0]"),
        ({"object": "page", "entry": [{"id": "1", "messaging": {}}]}, "entry[0].messaging"),
        ({"object": "page", "entry": [{"id": "1", "time": "soon", "messaging": []}]}, "entry[0].time"),
        (_item_body({"sender": {"id": []}, "message": {"mid": "m1"}}), "entry[0].messaging[0].sender.id"),
        (_item_body({"message": {"mid": "m1", "text": 5}}), "entry[0].messaging[0].message.text"),
        (_item_body({"message": {"text": "no mid"}}), "entry[0].messaging[0].message.mid"),
        (_item_body({"message": {"mid": "m1", "attachments": {"type": "image"}}}),
         "entry[0].messaging[0].message.attachments"),
        (_item_body({"sender": {"id": "2"}, "timestamp": 1e30, "message": {"mid": "m1"}}),
         "entry[0].messaging[0].timestamp"),
        (_item_body({"sender": {"id": "9" * 65}, "message": {"mid": "m1"}}), "entry[0].messaging[0].sender.id"),
        (_item_body({"message": {"mid": "m" * 256, "text": "x"}}), "entry[0].messaging[0].message.mid"),
    ],
)
def test_entry_or_item_of_wrong_types_is_unreadable_naming_the_field(body, path):
    """An entry or item we can't read is an UNREADABLE event holding it raw, its problem naming the field."""
    (event,) = parse_webhook(body)
    assert event.kind is EventKind.UNREADABLE and event.unreadable and not event.actionable
    assert event.problem.startswith(path + " must be")
    assert event.mid.startswith("ur.")


def test_unreadable_item_does_not_stop_the_others():
    """The items around an unreadable one are read as usual, in timestamp order per sender."""
    good = {"sender": {"id": "2"}, "timestamp": 5, "message": {"mid": "m.good", "text": "hi"}}
    odd = {"sender": {"id": "3"}, "timestamp": 4, "message": {"mid": "m.odd", "text": {"rich": True}}}
    body = {"object": "page", "entry": [{"id": "1", "time": 1, "messaging": [odd, good]}]}
    kinds = {event.sender_id: event.kind for event in parse_webhook(body)}
    assert kinds == {"2": EventKind.MESSAGE, "3": EventKind.UNREADABLE}


def test_unreadable_mid_is_stable_and_ignores_spacing_and_key_order():
    """A redelivered odd item gets the same derived id; a different item gets another."""
    item = {"sender": {"id": "2"}, "timestamp": 7, "message": {"mid": 5, "text": "x"}}
    reordered = {"message": {"text": "x", "mid": 5}, "timestamp": 7, "sender": {"id": "2"}}
    other = {"sender": {"id": "2"}, "timestamp": 7, "message": {"mid": 6, "text": "x"}}
    (first,) = parse_webhook(_item_body(item))
    (again,) = parse_webhook(_item_body(reordered))
    (different,) = parse_webhook(_item_body(other))
    assert first.mid == again.mid == unreadable_mid(page_id="1", sender_id="2", timestamp=7, raw=item)
    assert different.mid != first.mid
    assert (first.page_id, first.sender_id, first.timestamp) == ("1", "2", 7)


# --- normalise_attachment --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "fallback", "payload": {"url": "https://x.example/a"}},
        {"type": "fallback", "url": "https://x.example/a"},
        {"type": "fallback", "URL": "https://x.example/a"},
    ],
)
def test_attachment_url_is_found_wherever_facebook_put_it(raw):
    """``payload.url``, a top-level ``url`` or ``URL``: all land in ``url``."""
    assert normalise_attachment(raw).url == "https://x.example/a"


def test_location_attachment_keeps_its_coordinates():
    """A shared location's coordinates are kept as floats."""
    raw = {"type": "location", "payload": {"coordinates": {"lat": 52, "long": 9.5}}}
    assert normalise_attachment(raw) == Attachment(type="location", coordinates={"lat": 52.0, "long": 9.5})


def test_attachment_that_is_not_an_object_is_a_payload_error():
    """An attachment must be an object."""
    with pytest.raises(PayloadError, match="attachment must be an object"):
        normalise_attachment("image")


# --- through the webhook: what the parser reads is what the inbox keeps ----------------------------


@pytest.mark.django_db
def test_fallback_attachment_keeps_lowercase_url_and_title(post_webhook):
    """A shared link's lowercase top-level ``url`` and its title are kept (real 2017 capture)."""
    post_webhook("fallback_attachment")
    attachment = InboundMessage.objects.get().attachments[0]
    assert attachment["type"] == "fallback"
    assert attachment["url"].startswith("https://l.facebook.com/")
    assert attachment["title"].startswith("Dyon Enter 32 Pro")


@pytest.mark.django_db
def test_like_sticker_keeps_its_sticker_id(post_webhook):
    """The thumbs-up 'like' arrives as an image with a sticker_id, which is kept."""
    post_webhook("sticker_like")
    assert InboundMessage.objects.get().attachments[0]["sticker_id"] == 369239263222822
