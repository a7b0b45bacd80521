"""The shape of ``Message.structured``: what the bot offered, or what the user tapped.

Outbound (what the bot offered) is recorded by the channel with each part it sends, from the part
itself (``messenger.outbound.part_summary``, the one reader of the Send API body shape)::

    {"quick_replies": [{"content_type": "text", "title": "Yes", "payload": "YES"}],
     "buttons": [{"type": "postback", "title": "Menu", "payload": "MENU"},
                 {"type": "web_url", "title": "Site", "url": "https://..."}],
     "cards": [{"title": "...", "subtitle": "...", "image_url": "...", "buttons": [...]}]}

(keys the part has nothing for are left out). Inbound (what the user tapped), built here by
:func:`structured_from_tap`::

    {"kind": "quick_reply" | "postback", "payload": "YES", "title": "Yes"}

The admin transcript renders both shapes (and, leniently, a whole Send API body with its
``attachment``, as older records may hold) readably; anything else is shown as escaped JSON.
"""

from __future__ import annotations


def structured_from_tap(*, payload: str, title: str = "", kind: str = "") -> dict:
    """The ``structured`` value to store with an inbound quick-reply or postback tap."""
    structured = {"payload": payload, "title": title}
    if kind:
        structured["kind"] = kind
    return structured
