"""Tests for messenger/formatter.py: markdown stripping, splitting, and Send API message bodies."""

from __future__ import annotations

import logging

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.types import Button, Card, QuickReply, Reply
from messenger import texts
from messenger.formatter import (
    MAX_PARTS,
    MAX_TEXT_CHARS,
    format_reply,
    is_http_url,
    shorten,
    split_text,
    strip_markdown,
)

ELLIPSIS = texts.TRUNCATION_ELLIPSIS


def _sentences(count: int, *, words: int = 12) -> str:
    """``count`` distinct numbered sentences of ``words`` words each, separated by spaces."""
    return " ".join(f"Sentence {i} " + " ".join(["word"] * (words - 2)) + "." for i in range(count))


def _grapheme_bounds(text: str) -> set[int]:
    bounds = {0}
    pos = 0
    for cluster in regex.findall(r"\X", text):
        pos += len(cluster)
        bounds.add(pos)
    return bounds


def _locate(text: str, parts: list[str], *, whole: bool = True) -> list[tuple[int, int]]:
    """Where each part sits in ``text``; asserts only whitespace lies between (and, if whole, around) them."""
    spans = []
    cursor = 0
    for part in parts:
        pos = text.find(part, cursor)
        assert pos >= 0, f"part not found in order: {part!r}"
        assert text[cursor:pos].strip() == "", "something other than whitespace was dropped"
        spans.append((pos, pos + len(part)))
        cursor = pos + len(part)
    if whole:
        assert text[cursor:].strip() == "", "text after the last part was dropped"
    return spans


# --- the seed's tests ------------------------------------------------------------------------------


def test_truncates_response_to_2000_chars():
    """A very long reply becomes at most five messages of at most 2,000 characters each."""
    reply = Reply(text=_sentences(1500), intent="faq", confidence=1.0)
    messages = format_reply(reply)
    assert len(messages) == MAX_PARTS
    assert all(1 <= len(m["text"]) <= MAX_TEXT_CHARS for m in messages)
    assert all(set(m) == {"text"} for m in messages)


def test_truncation_preserves_sentence_boundary():
    """Past the cap, the last message stops at the end of a whole sentence before the ellipsis."""
    text = _sentences(1500)
    parts = split_text(text)
    last = parts[-1]
    assert last.endswith(" " + ELLIPSIS)
    kept = last[: -len(" " + ELLIPSIS)]
    assert kept.endswith(".")
    # The kept text is a run of whole sentences of the original, followed there by a space.
    position = text.find(kept)
    assert position > 0 and text[position + len(kept)] == " "
    assert text[position - 1] == " " and text[position - 2] == "."


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


def test_adds_ellipsis_when_truncated():
    """Only a text cut at the cap ends with an ellipsis, and that message still fits the limit."""
    truncated = split_text(_sentences(1500))
    assert truncated[-1].endswith(ELLIPSIS)
    assert len(truncated[-1]) <= MAX_TEXT_CHARS
    assert not any(part.endswith(ELLIPSIS) for part in truncated[:-1])
    whole = split_text(_sentences(100))  # ~6,700 characters: four parts
    assert not whole[-1].endswith(ELLIPSIS)


def test_splits_long_response_into_multiple_messages():
    """A 4,500-character reply becomes three messages, cut between sentences, with nothing lost."""
    text = _sentences(72, words=12)  # ~4,500 characters
    assert 4000 < len(text) < 6000
    parts = split_text(text)
    assert len(parts) == 3
    assert all(part.endswith(".") for part in parts)
    assert " ".join(parts) == text


# --- strip_markdown ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("# Heading\n\nBody", "Heading\n\nBody"),
        ("Setext heading\n===\n\nBody", "Setext heading\n\nBody"),
        ("**bold** __also__ *it* _it_ ~~gone~~", "bold also it it gone"),
        ("Use `pip install x` now", "Use pip install x now"),
        ("```python\nprint('hi')\n```", "print('hi')"),
        ("    indented = True", "indented = True"),
        ("See [the docs](https://example.com/d).", "See the docs (https://example.com/d)."),
        ("Go to <https://example.com>", "Go to https://example.com"),
        ("[https://example.com](https://example.com)", "https://example.com"),
        ("Mail <team@example.com>", "Mail team@example.com"),
        ("Logo: ![Our logo](https://example.com/l.png)", "Logo: Our logo"),
        ("Before ![](https://example.com/l.png)after", "Before after"),
        ("- one\n- two\n* three", "• one\n• two\n\n• three"),
        ("1. first\n2. second", "1. first\n2. second"),
        ("3. third\n4. fourth", "3. third\n4. fourth"),
        ("- outer\n  - inner\n- next", "• outer\n  • inner\n• next"),
        ("> quoted\n> lines", "quoted\nlines"),
        (
            "| Plan | Price |\n|---|---|\n| Basic | 5 € |\n| Pro | 9 € |",
            "Plan | Price\nBasic | 5 €\nPro | 9 €",
        ),
        ("Line one  \nline two", "Line one\nline two"),
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("a<br>b", "a\nb"),
        ("<div>Hello <b>there</b></div>", "Hello there"),
        ("Above\n\n---\n\nBelow", "Above\n\nBelow"),
        ("snake_case_name and 2 * 3 = 6", "snake_case_name and 2 * 3 = 6"),
        ("Escaped \\*stars\\*", "Escaped *stars*"),
        ("Plain text, no markup at all.", "Plain text, no markup at all."),
        ("", ""),
        ("   \n  ", ""),
    ],
)
def test_strip_markdown_renders_each_construct_as_plain_text(source, expected):
    """Each markdown construct has one plain-text rendering (lists as bullets, tables as lines)."""
    assert strip_markdown(source) == expected


def test_strip_markdown_leaves_no_markup_in_a_typical_model_answer():
    """A chat model's typical formatted answer loses every markup character sequence."""
    answer = (
        "# Your options\n\n"
        "Here is **what you can do**:\n\n"
        "1. *Reset* your password at [the portal](https://example.com/reset)\n"
        "2. Contact ~~sales~~ support\n\n"
        "| Channel | Hours |\n| --- | :---: |\n| Phone | 9-17 |\n\n"
        "> Tip: use `Ctrl+R` to refresh.\n\n"
        "```\nerror: code 42\n```\n"
    )
    plain = strip_markdown(answer)
    for markup in ("**", "# ", "~~", "`", "](", "|---", "> ", "```"):
        assert markup not in plain
    assert plain == (
        "Your options\n\n"
        "Here is what you can do:\n\n"
        "1. Reset your password at the portal (https://example.com/reset)\n"
        "2. Contact sales support\n\n"
        "Channel | Hours\nPhone | 9-17\n\n"
        "Tip: use Ctrl+R to refresh.\n\n"
        "error: code 42"
    )


# --- split_text -------------------------------------------------------------------------------------


def test_split_text_empty_or_whitespace_gives_no_parts():
    """Nothing to say gives no messages at all."""
    assert split_text("") == []
    assert split_text(" \n\t ") == []


def test_split_text_short_text_is_one_stripped_part():
    """A text within the limit is one message, without surrounding whitespace."""
    assert split_text("  Hello there.  \n") == ["Hello there."]


def test_split_text_falls_back_to_words_without_sentence_ends():
    """A long sentence without punctuation is cut between words, never inside one."""
    words = [f"w{i:04d}" for i in range(1000)]  # 5 characters each
    parts = split_text(" ".join(words), limit=100, max_parts=1000)
    assert all(len(part) <= 100 for part in parts)
    assert [w for part in parts for w in part.split(" ")] == words


def test_split_text_cuts_hard_without_any_space():
    """A text without spaces is cut at the limit itself."""
    parts = split_text("x" * 4500)
    assert [len(p) for p in parts] == [2000, 2000, 500]


def test_split_text_treats_line_breaks_and_closing_quotes_as_sentence_ends():
    """A line break, or a terminator followed by a closing quote, ends a sentence."""
    assert split_text('He said "Stop." Then he left.', limit=20) == ['He said "Stop."', "Then he left."]
    assert split_text("first line without stop\nsecond line", limit=30) == [
        "first line without stop",
        "second line",
    ]


def test_split_text_cuts_after_cjk_full_stop_without_space():
    """Japanese and Chinese sentences, which have no spaces, are cut after their full stop."""
    text = "これは最初の文です。これは二番目の文です。"
    assert split_text(text, limit=15) == ["これは最初の文です。", "これは二番目の文です。"]


def test_split_text_never_breaks_zwj_emoji_flags_or_combining_marks():
    """Family emoji, flags and accented letters stay whole even when cut hard."""
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # 7 code points
    assert all(len(p) % 7 == 0 for p in split_text(family * 50, limit=20, max_parts=100))
    flag = "\U0001f1eb\U0001f1f7"  # 2 code points
    assert all(len(p) == 4 for p in split_text(flag * 10, limit=5, max_parts=100))
    accented = "e\u0301\u0327"  # e + acute + cedilla: one cluster of 3
    assert all(len(p) % 3 == 0 for p in split_text(accented * 40, limit=10, max_parts=100))


def test_split_text_never_splits_a_surrogate_pair():
    """A string holding a raw UTF-16 surrogate pair is never cut between its halves."""
    pair = "\ud83d\ude00"
    parts = split_text(pair * 10, limit=3, max_parts=100)
    assert all(len(p) == 2 and p == pair for p in parts)


def test_split_text_breaks_a_cluster_longer_than_a_message():
    """A pathological cluster (thousands of combining marks) is cut by code points, nothing lost."""
    text = "a" + "\u0301" * 4500
    parts = split_text(text, max_parts=10)
    assert all(1 <= len(p) <= MAX_TEXT_CHARS for p in parts)
    assert "".join(parts) == text


def test_split_text_with_one_part_truncates_at_a_sentence():
    """``max_parts=1`` keeps the whole sentences that fit and marks the cut."""
    assert split_text("One two. Three four. Five six.", limit=22, max_parts=1) == ["One two. Three four. …"]


def test_split_text_truncates_at_a_word_when_no_sentence_fits():
    """Without a sentence end in reach, the truncated part ends at a word and an ellipsis."""
    assert split_text("alpha beta gamma delta epsilon", limit=18, max_parts=1) == ["alpha beta gamma…"]


def test_split_text_rejects_impossible_limits():
    """A limit below 2 or fewer than one part cannot be honoured and is refused."""
    with pytest.raises(ValueError):
        split_text("hello", limit=1)
    with pytest.raises(ValueError):
        split_text("hello", max_parts=0)


# --- split_text properties ----------------------------------------------------------------------------

_TOKENS = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8),
    st.sampled_from(
        [
            " ",
            "  ",
            "\n",
            "\n\n",
            ". ",
            "! ",
            "? ",
            "。",
            '." ',
            "word",
            "Satz",
            "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",  # family (ZWJ sequence)
            "\U0001f44d\U0001f3fd",  # thumbs up, skin tone
            "\U0001f1e9\U0001f1ea",  # flag DE
            "\U0001f3f3\ufe0f\u200d\U0001f308",  # rainbow flag
            "e\u0301",  # combining acute
            "\u0915\u094d\u0937",  # Devanagari conjunct
            "\r\n",
            "\ud83d\ude00",  # a raw surrogate pair
        ]
    ),
)
_TEXTS = st.lists(_TOKENS, max_size=120).map("".join)


def _assert_cuts_are_safe(text: str, parts: list[str], *, whole: bool = True) -> None:
    bounds = _grapheme_bounds(text)
    for start, end in _locate(text, parts, whole=whole):
        for cut in (start, end):
            assert cut in bounds, f"cut at {cut} splits a grapheme cluster"
            assert not (
                0 < cut < len(text) and "\ud800" <= text[cut - 1] <= "\udbff" and "\udc00" <= text[cut] <= "\udfff"
            ), "cut between surrogate halves"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXTS, limit=st.integers(min_value=12, max_value=80))
def test_split_text_parts_fit_and_keep_clusters_and_lose_nothing_below_the_cap(text, limit):
    """Below the cap, every part is 1..limit, cuts fall on cluster boundaries, and nothing is lost."""
    parts = split_text(text, limit=limit, max_parts=10_000)
    assert all(1 <= len(p) <= limit for p in parts)
    # No part starts or ends with a whitespace cluster (a space carrying a combining mark is content).
    assert all(not regex.match(r"\X", p)[0].isspace() and not regex.findall(r"\X", p)[-1].isspace() for p in parts)
    _assert_cuts_are_safe(text, parts)
    assert "".join(" ".join(parts).split()) == "".join(text.split())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXTS, limit=st.integers(min_value=12, max_value=40), max_parts=st.integers(1, 4))
def test_split_text_respects_the_part_cap_with_a_marked_cut(text, limit, max_parts):
    """With a cap, there are at most ``max_parts`` parts of 1..limit, and a cut text ends in an ellipsis."""
    parts = split_text(text, limit=limit, max_parts=max_parts)
    uncapped = split_text(text, limit=limit, max_parts=10_000)
    assert all(1 <= len(p) <= limit for p in parts)
    assert len(parts) == min(len(uncapped), max_parts)
    if len(uncapped) > max_parts:
        assert parts[-1].endswith(ELLIPSIS)
        assert parts[:-1] == uncapped[: max_parts - 1]
        kept = parts[-1].removesuffix(ELLIPSIS).rstrip()
        _assert_cuts_are_safe(text, [*parts[:-1], kept], whole=False)
    else:
        assert parts == uncapped


@settings(max_examples=50, deadline=None)
@given(text=st.lists(_TOKENS, min_size=200, max_size=900).map("".join))
def test_split_text_default_limit_parts_are_1_to_2000_characters(text):
    """At the real limit, every part of a long text is 1 to 2,000 characters."""
    parts = split_text(text, max_parts=10_000)
    assert all(1 <= len(p) <= MAX_TEXT_CHARS for p in parts)
    _assert_cuts_are_safe(text, parts)


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
    reply = Reply(text=_sentences(72), quick_replies=(QuickReply(title="More", payload="MORE"),))
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


def test_format_reply_cards_without_text_send_only_the_carousel():
    """A reply carried by its cards alone is just the generic template, with quick replies on it."""
    reply = Reply(
        text="",
        cards=(Card(title="Caps", subtitle="For sunny days."),),
        quick_replies=(QuickReply(title="Back", payload="BACK"),),
    )
    messages = format_reply(reply)
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
    reply = Reply(
        text="Pick one.",
        buttons=(
            Button(title="One", payload="ONE"),
            Button(title="Two", payload="TWO"),
            Button(title="Three", payload="THREE"),
            Button(title="Four", payload="FOUR"),
            Button(title="Site", type="web_url", url="https://example.com/site"),
        ),
    )
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
        text=_sentences(2000),
        buttons=(Button(title="Go", payload="GO"),),
        cards=tuple(Card(title=f"C{i}", subtitle="s" * 200) for i in range(40)),
    )
    for message in format_reply(reply):
        if "text" in message:
            assert 1 <= len(message["text"]) <= MAX_TEXT_CHARS


# --- helpers ----------------------------------------------------------------------------------------


def test_shorten_keeps_grapheme_clusters_whole():
    """Shortening never leaves half an emoji before the ellipsis."""
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"
    assert shorten("ab" + family + "cdefghij", 8) == "ab" + ELLIPSIS
    assert shorten("ab" + family + "cdefghij", 10) == "ab" + family + ELLIPSIS
    assert shorten("short", 10) == "short"


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
    reply = Reply(
        text="",
        buttons=(Button(title="Menu", payload="MENU"),),
        cards=(Card(title="Caps", subtitle="For sunny days."),),
    )
    messages = format_reply(reply)
    assert [m["attachment"]["payload"]["template_type"] for m in messages] == ["button", "generic"]
    assert messages[0]["attachment"]["payload"]["text"] == texts.BUTTONS_PROMPT
