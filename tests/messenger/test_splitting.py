"""Tests for messenger/splitting.py: long text cut into messages, and labels shortened, never mid-cluster."""

from __future__ import annotations

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messenger import texts
from messenger.limits import MAX_TEXT_CHARS
from messenger.splitting import shorten, split_text
from tests.messenger.helpers import sentences

ELLIPSIS = texts.TRUNCATION_ELLIPSIS


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


def test_truncation_preserves_sentence_boundary():
    """Past the cap, the last message stops at the end of a whole sentence before the ellipsis."""
    text = sentences(1500)
    parts = split_text(text)
    last = parts[-1]
    assert last.endswith(" " + ELLIPSIS)
    kept = last[: -len(" " + ELLIPSIS)]
    assert kept.endswith(".")
    # The kept text is a run of whole sentences of the original, followed there by a space.
    position = text.find(kept)
    assert position > 0 and text[position + len(kept)] == " "
    assert text[position - 1] == " " and text[position - 2] == "."


def test_adds_ellipsis_when_truncated():
    """Only a text cut at the cap ends with an ellipsis, and that message still fits the limit."""
    truncated = split_text(sentences(1500))
    assert truncated[-1].endswith(ELLIPSIS)
    assert len(truncated[-1]) <= MAX_TEXT_CHARS
    assert not any(part.endswith(ELLIPSIS) for part in truncated[:-1])
    whole = split_text(sentences(100))  # ~6,700 characters: four parts
    assert not whole[-1].endswith(ELLIPSIS)


def test_splits_long_response_into_multiple_messages():
    """A 4,500-character reply becomes three messages, cut between sentences, with nothing lost."""
    text = sentences(72, words=12)  # ~4,500 characters
    assert 4000 < len(text) < 6000
    parts = split_text(text)
    assert len(parts) == 3
    assert all(part.endswith(".") for part in parts)
    assert " ".join(parts) == text


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


# --- shorten ----------------------------------------------------------------------------------------


def test_shorten_keeps_grapheme_clusters_whole():
    """Shortening never leaves half an emoji before the ellipsis."""
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"
    assert shorten("ab" + family + "cdefghij", 8) == "ab" + ELLIPSIS
    assert shorten("ab" + family + "cdefghij", 10) == "ab" + family + ELLIPSIS
    assert shorten("short", 10) == "short"
