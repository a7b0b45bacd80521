"""messenger/storable.py: every string of a parsed body made storable by PostgreSQL (NUL, lone surrogates)."""

from __future__ import annotations

import json

from messenger.storable import REPLACEMENT, storable, storable_str


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
