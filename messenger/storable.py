"""Strings the database can store: NUL and lone surrogates replaced at the edge, before anything is kept.

JSON may carry characters PostgreSQL refuses: ``\\u0000`` (text and jsonb reject NUL) and lone
surrogates such as ``"\\ud800"`` (not encodable to UTF-8, so the driver fails before the query is
sent). A user can type the first, and a broken client can send the second; either used to make the
webhook a 500, and Facebook then redelivered the whole body for an hour. :func:`storable` replaces
each such character with U+FFFD (the Unicode replacement character) in every string of a parsed body,
keys included, so the typed fields and the raw JSON kept are both storable and the message is answered
as usual. The signature was already checked on the raw bytes, so nothing signed is altered.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"

# NUL and every UTF-16 surrogate code point: json.loads yields a surrogate only when it is unpaired
# (a valid pair becomes one astral character), so any surrogate left in a str is a lone one.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


# Only a ``\\u`` escape puts NUL or a surrogate into parsed JSON: ``json.loads`` refuses raw control
# characters in strings, and a raw surrogate is not UTF-8, so the body failed to decode before. A
# body without such an escape (nearly all of them) needs no walk; an escaped backslash before ``u``
# is a harmless false positive.
_UNSTORABLE_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def may_hold_unstorable(raw: bytes) -> bool:
    """Whether the JSON bytes ``raw`` can parse to a string :func:`storable` would change."""
    return _UNSTORABLE_ESCAPE.search(raw) is not None


def storable_str(value: str) -> str:
    """``value`` with NUL and lone surrogates replaced by U+FFFD (the same object when it had none)."""
    if value.isascii() and "\x00" not in value:
        return value
    return _UNSTORABLE.sub(REPLACEMENT, value)


def storable(data: Any) -> Any:
    """A parsed JSON value with every string (values and object keys) made storable.

    Containers are rebuilt, scalars other than strings are returned as they are. Two keys that differ
    only in an unstorable character collapse into one (the later wins, as ``json.loads`` does for
    repeated keys).
    """
    if isinstance(data, str):
        return storable_str(data)
    if isinstance(data, dict):
        return {storable_str(key): storable(value) for key, value in data.items()}
    if isinstance(data, list):
        return [storable(value) for value in data]
    return data
