"""Tests for messenger/formatter.py: engine replies as Send API message bodies within Facebook's limits."""

from __future__ import annotations

import logging

import pytest

from engine.types import Button, Card, QuickReply, Reply
from messenger import texts
from messenger.formatter import format_reply, is_http_url
from messenger.limits import MAX_TEXT_CHARS
from messenger.splitting import MAX_PARTS
from tests.messenger.helpers import sentences

ELLIPSIS = texts.TRUNCATION_ELLIPSIS


# --- the seed's tests ------------------------------------------------------------------------------


def test_truncates_response_to_2000_chars():
    """A very long reply becomes at most five messages of at most 2,000 characters each."""
    reply = Reply(text=sentences(1500), intent="faq", confidence=1.0)
    messages = format_reply(reply)
    assert len(messages) == MAX_PARTS
    assert all(1 <= len(m["text"]) <= MAX_TEXT_CHARS for m in messages)
    assert all(set(m) == {"text"} for m in messages)


def test_strips_markdown_from_response():
    """Markdown in an engine's reply reaches Messenger as clean plain text."""
    reply = Reply(
        text="## Opening hours\n\nWe are open **Monday** to _Friday_, see [our page](https://example.com/hours).",
        intent="hours",
        confidence=1.0,
    )
    assert format_reply(reply) == [
        {"text": "Opening hours\n\nWe are open Monday to Friday, see our page (https://example.com/hours)."}
    ]


# --- format_reply: documented shapes ------------------------------------------------------------------


def test_format_reply_plain_text_is_one_text_message():
    """A short answer is one ``{"text": ...}`` message."""
    assert format_reply(Reply(text="Hello!", intent="greeting", confidence=1.0)) == [{"text": "Hello!"}]


def test_format_reply_without_text_or_cards_is_empty():
    """Nothing to say (even with quick replies or buttons) gives no messages; the caller decides."""
    qr = (QuickReply(title="Yes", payload="YES"),)
    assert format_reply(Reply(text="")) == []
    assert format_reply(Reply(text="  ", quick_replies=qr)) == []
    assert format_reply(Reply(text="---", buttons=(Button(title="Go", payload="GO"),))) == []


def test_format_reply_quick_replies_match_facebook_sample():
    """Quick replies have the documented shape (the 'Pick a color:' sample, without images)."""
    reply = Reply(
        text="Pick a color:",
        quick_replies=(
            QuickReply(title="Red", payload="PICK_RED"),
            QuickReply(title="Green", payload="PICK_GREEN"),
        ),
    )
    assert format_reply(reply) == [
        {
            "text": "Pick a color:",
            "quick_replies": [
                {"content_type": "text", "title": "Red", "payload": "PICK_RED"},
                {"content_type": "text", "title": "Green", "payload": "PICK_GREEN"},
            ],
        }
    ]


def test_format_reply_quick_replies_ride_on_the_last_message_only():
    """When a long text is split, only its last message carries the quick replies."""
    reply = Reply(text=sentences(72), quick_replies=(QuickReply(title="More", payload="MORE"),))
    messages = format_reply(reply)
    assert len(messages) == 3
    assert "quick_replies" not in messages[0] and "quick_replies" not in messages[1]
    assert messages[2]["quick_replies"] == [{"content_type": "text", "title": "More", "payload": "MORE"}]


def test_format_reply_button_template_matches_facebook_sample():
    """Buttons make a button template of the documented shape, postback and URL buttons alike."""
    reply = Reply(
        text="What do you want to do next?",
        buttons=(
            Button(title="Visit Messenger", type="web_url", url="https://www.messenger.com"),
            Button(title="Start Chatting", type="postback", payload="START_CHATTING"),
        ),
    )
    assert format_reply(reply) == [
        {
            "attachment": {
                "type": "template",
                "payload": {
                    "template_type": "button",
                    "text": "What do you want to do next?",
                    "buttons": [
                        {"type": "web_url", "url": "https://www.messenger.com", "title": "Visit Messenger"},
                        {"type": "postback", "title": "Start Chatting", "payload": "START_CHATTING"},
                    ],
                },
            }
        }
    ]


def test_format_reply_generic_template_matches_facebook_sample():
    """Cards follow the text as a generic template of the documented shape, empty keys omitted."""
    reply = Reply(
        text="Our hats:",
        cards=(
            Card(
                title="Welcome!",
                subtitle="We have the right hat for everyone.",
                image_url="https://example.com/hat.jpg",
                buttons=(
                    Button(title="View Website", type="web_url", url="https://example.com"),
                    Button(title="Start Chatting", payload="DEVELOPER_DEFINED_PAYLOAD"),
                ),
            ),
            Card(title="Caps", subtitle="For sunny days."),
        ),
    )
    assert format_reply(reply) == [
        {"text": "Our hats:"},
        {
            "attachment": {
                "type": "template",
                "payload": {
                    "template_type": "generic",
                    "elements": [
                        {
                            "title": "Welcome!",
                            "subtitle": "We have the right hat for everyone.",
                            "image_url": "https://example.com/hat.jpg",
                            "buttons": [
                                {"type": "web_url", "url": "https://example.com", "title": "View Website"},
                                {
                                    "type": "postback",
                                    "title": "Start Chatting",
                                    "payload": "DEVELOPER_DEFINED_PAYLOAD",
                                },
                            ],
                        },
                        {"title": "Caps", "subtitle": "For sunny days."},
                    ],
                },
            }
        },
    ]


def _postbacks(*titles: str) -> tuple[Button, ...]:
    """Postback buttons whose payload is their title in capitals."""
    return tuple(Button(title=title, payload=title.upper()) for title in titles)


def _caps_card_only(**more) -> list[dict]:
    """The messages for a reply with no text, carried by one card, and ``more`` on it."""
    return format_reply(Reply(text="", cards=(Card(title="Caps", subtitle="For sunny days."),), **more))


def test_format_reply_cards_without_text_send_only_the_carousel():
    """A reply carried by its cards alone is just the generic template, with quick replies on it."""
    messages = _caps_card_only(quick_replies=(QuickReply(title="Back", payload="BACK"),))
    assert len(messages) == 1
    assert messages[0]["attachment"]["payload"]["template_type"] == "generic"
    assert messages[0]["quick_replies"] == [{"content_type": "text", "title": "Back", "payload": "BACK"}]


# --- format_reply: each limit exceeded once -----------------------------------------------------------


def test_format_reply_keeps_13_of_14_quick_replies(caplog):
    """Fourteen quick replies become the first thirteen, and the drop is logged."""
    items = tuple(QuickReply(title=f"Option {i}", payload=f"OPT_{i}") for i in range(14))
    with caplog.at_level(logging.WARNING, logger="messenger.format"):
        messages = format_reply(Reply(text="Choose:", quick_replies=items))
    assert [q["payload"] for q in messages[0]["quick_replies"]] == [f"OPT_{i}" for i in range(13)]
    assert "messenger.format.quick_replies_truncated" in [r.getMessage() for r in caplog.records]


def test_format_reply_shortens_a_21_character_quick_reply_title():
    """A 21-character quick reply title is shortened to 20 with an ellipsis; the payload is kept."""
    title = "Opening hours today!!"
    assert len(title) == 21
    messages = format_reply(Reply(text="Choose:", quick_replies=(QuickReply(title=title, payload="HOURS"),)))
    assert messages[0]["quick_replies"] == [
        {"content_type": "text", "title": "Opening hours today…", "payload": "HOURS"}
    ]


def test_format_reply_drops_a_quick_reply_with_an_oversized_or_empty_payload():
    """A payload over 1,000 characters cannot be shortened without changing its meaning: dropped."""
    items = (
        QuickReply(title="Big", payload="x" * 1001),
        QuickReply(title="Empty", payload=""),
        QuickReply(title="Fine", payload="x" * 1000),
    )
    messages = format_reply(Reply(text="Choose:", quick_replies=items))
    assert messages[0]["quick_replies"] == [{"content_type": "text", "title": "Fine", "payload": "x" * 1000}]


def test_format_reply_sends_641_character_button_text_as_text_then_buttons():
    """Text too long for a button template goes out as a message, and the buttons follow with a prompt."""
    text = ("a" * 99 + " ") * 6 + "b" * 41  # 641 characters
    assert len(text) == 641
    button = Button(title="Go", payload="GO")
    assert format_reply(Reply(text=text, buttons=(button,))) == [
        {"text": text},
        {
            "attachment": {
                "type": "template",
                "payload": {
                    "template_type": "button",
                    "text": texts.BUTTONS_PROMPT,
                    "buttons": [{"type": "postback", "title": "Go", "payload": "GO"}],
                },
            }
        },
    ]


def test_format_reply_keeps_640_character_button_text_in_the_template():
    """Text of exactly 640 characters still fits the button template."""
    text = "c" * 640
    messages = format_reply(Reply(text=text, buttons=(Button(title="Go", payload="GO"),)))
    assert len(messages) == 1
    assert messages[0]["attachment"]["payload"]["text"] == text


def test_format_reply_moves_a_fourth_button_out_of_the_template():
    """Past three buttons, a postback becomes a quick reply and a URL becomes a line of text."""
    site = Button(title="Site", type="web_url", url="https://example.com/site")
    reply = Reply(text="Pick one.", buttons=(*_postbacks("One", "Two", "Three", "Four"), site))
    (message,) = format_reply(reply)
    payload = message["attachment"]["payload"]
    assert payload["text"] == "Pick one.\n\nSite: https://example.com/site"
    assert [b["payload"] for b in payload["buttons"]] == ["ONE", "TWO", "THREE"]
    assert message["quick_replies"] == [{"content_type": "text", "title": "Four", "payload": "FOUR"}]


def test_format_reply_shortens_a_21_character_button_title():
    """A button title over 20 characters is shortened with an ellipsis."""
    reply = Reply(text="Hi", buttons=(Button(title="Talk to a real person", payload="HUMAN"),))
    (message,) = format_reply(reply)
    assert message["attachment"]["payload"]["buttons"] == [
        {"type": "postback", "title": "Talk to a real pers…", "payload": "HUMAN"}
    ]
    assert len(message["attachment"]["payload"]["buttons"][0]["title"]) == 20


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "ftp://example.com/f", "example.com", "https://", "https://exa mple.com", ""],
)
def test_format_reply_drops_a_url_button_with_a_bad_url(url):
    """A URL button without an absolute http(s) URL is dropped; with no button left it is plain text."""
    reply = Reply(text="Read more", buttons=(Button(title="Open", type="web_url", url=url),))
    assert format_reply(reply) == [{"text": "Read more"}]


def test_format_reply_keeps_10_of_11_cards_and_says_the_11th():
    """Eleven cards make a carousel of ten, and the eleventh follows as a line of text."""
    cards = tuple(Card(title=f"Item {i}", subtitle=f"About {i}") for i in range(11))
    messages = format_reply(Reply(text="Items:", cards=cards))
    assert messages[0] == {"text": "Items:"}
    elements = messages[1]["attachment"]["payload"]["elements"]
    assert [e["title"] for e in elements] == [f"Item {i}" for i in range(10)]
    assert messages[2] == {"text": "• Item 10: About 10"}
    assert len(messages) == 3


def test_format_reply_shortens_81_character_card_title_and_subtitle():
    """A card title or subtitle over 80 characters is shortened to 80 with an ellipsis."""
    long = "t" * 81
    messages = format_reply(Reply(text="", cards=(Card(title=long, subtitle=long),)))
    element = messages[0]["attachment"]["payload"]["elements"][0]
    assert element == {"title": "t" * 79 + ELLIPSIS, "subtitle": "t" * 79 + ELLIPSIS}


def test_format_reply_keeps_three_buttons_per_card_and_drops_a_bad_image_url():
    """A card keeps its first three valid buttons and omits an image URL that is not http(s)."""
    card = Card(
        title="Hat",
        image_url="file:///etc/passwd",
        buttons=tuple(Button(title=f"B{i}", payload=f"P{i}") for i in range(4)),
    )
    element = format_reply(Reply(text="", cards=(card,)))[0]["attachment"]["payload"]["elements"][0]
    assert element == {
        "title": "Hat",
        "buttons": [{"type": "postback", "title": f"B{i}", "payload": f"P{i}"} for i in range(3)],
    }


def test_format_reply_says_a_title_only_card_as_text():
    """Facebook refuses an element with only a title, so such a card becomes a line of text."""
    card = Card(title="Just a title", image_url="not a url")
    assert format_reply(Reply(text="See:", cards=(card,))) == [{"text": "See:"}, {"text": "• Just a title"}]


def test_format_reply_uses_the_subtitle_when_a_card_has_no_title():
    """A card without title takes its subtitle as the title Facebook requires."""
    card = Card(title="", subtitle="Only subtitle", image_url="https://example.com/i.png")
    element = format_reply(Reply(text="", cards=(card,)))[0]["attachment"]["payload"]["elements"][0]
    assert element == {"title": "Only subtitle", "image_url": "https://example.com/i.png"}


def test_format_reply_every_text_fits_the_send_api_limit():
    """However long the reply and whatever it carries, no text message exceeds 2,000 characters."""
    reply = Reply(
        text=sentences(2000),
        buttons=(Button(title="Go", payload="GO"),),
        cards=tuple(Card(title=f"C{i}", subtitle="s" * 200) for i in range(40)),
    )
    for message in format_reply(reply):
        if "text" in message:
            assert 1 <= len(message["text"]) <= MAX_TEXT_CHARS


# --- helpers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("https://example.com/x?y=1", True),
        ("http://localhost:8000", True),
        ("HTTPS://EXAMPLE.COM", True),
        ("mailto:a@b.c", False),
        ("//example.com", False),
        ("https://example.com/\n", False),
        ("http://[::1", False),
    ],
)
def test_is_http_url_accepts_only_absolute_http_urls(url, valid):
    """Only absolute http(s) URLs with a host pass."""
    assert is_http_url(url) is valid


def test_format_reply_buttons_without_text_use_the_prompt_before_the_cards():
    """Buttons on a reply carried by cards get the standard prompt as their template text."""
    messages = _caps_card_only(buttons=(Button(title="Menu", payload="MENU"),))
    assert [m["attachment"]["payload"]["template_type"] for m in messages] == ["button", "generic"]
    assert messages[0]["attachment"]["payload"]["text"] == texts.BUTTONS_PROMPT
