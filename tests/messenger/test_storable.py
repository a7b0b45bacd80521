"""messenger/storable.py: every string of a parsed body made storable by PostgreSQL (NUL, lone surrogates)."""

from __future__ import annotations

import json

import pytest

from messenger.storable import REPLACEMENT, may_hold_unstorable, storable, storable_str


def test_nul_and_lone_surrogates_are_replaced():
    """NUL and each lone surrogate become U+FFFD; the rest of the string is untouched."""
    assert storable_str("a\x00b") == f"a{REPLACEMENT}b"
    assert storable_str("x\ud800y\udfff") == f"x{REPLACEMENT}y{REPLACEMENT}"
    assert storable_str("héllo 👋") == "héllo 👋"


def test_surrogate_pair_in_json_stays_one_character():
    """A valid pair (an emoji escaped in JSON) is one astral character, not two lone surrogates."""
    assert storable(json.loads('"\\ud83d\\udc4b"')) == "👋"


def test_keys_and_nested_values_are_made_storable():
    """Object keys, list items and nested objects are all cleaned; other scalars are kept as they are."""
    data = json.loads('{"k\\u0000": ["\\ud800", 1, true, null, {"\\udc00": "ok"}]}')
    assert storable(data) == {f"k{REPLACEMENT}": [REPLACEMENT, 1, True, None, {REPLACEMENT: "ok"}]}


def test_clean_string_is_returned_as_is():
    """A string with nothing to replace is the same object (no copy on the common path)."""
    text = "plain ascii text"
    assert storable_str(text) is text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"text": "hi\\u0000"}', True),
        (b'{"text": "\\ud800"}', True),
        (b'{"text": "\\uDC00"}', True),
        (b'{"text": "\\ud83d\\udc4b"}', True),  # a valid pair: walked, left as one character
        (b'{"text": "caf\\u00e9 \\u2019"}', False),
        (b'{"text": "plain", "n": 1}', False),
    ],
)
def test_may_hold_unstorable_finds_only_nul_and_surrogate_escapes(raw, expected):
    """The webhook walks a body only when an escape could have put NUL or a surrogate in it."""
    assert may_hold_unstorable(raw) is expected
