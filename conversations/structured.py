"""The shape of ``Message.structured``: what the bot offered, or what the user tapped.

Outbound (what the bot offered), built by :func:`structured_from_reply` from an engine reply::

    {"quick_replies": [{"title": "Yes", "payload": "YES"}],
     "buttons": [{"type": "postback", "title": "Menu", "payload": "MENU", "url": ""}],
     "cards": [{"title": "...", "subtitle": "...", "image_url": "...", "buttons": [...]}]}

(keys with nothing in them are left out). Inbound (what the user tapped), built by
:func:`structured_from_tap`::

    {"kind": "quick_reply" | "postback", "payload": "YES", "title": "Yes"}

The admin transcript renders both shapes (and, leniently, Send API ``quick_replies`` and template
``attachment`` bodies) readably; anything else is shown as escaped JSON.
"""

from __future__ import annotations

from dataclasses import asdict

from engine.types import Reply


def structured_from_reply(*, reply: Reply) -> dict:
    """The ``structured`` value to store with an outbound message carrying ``reply``."""
    structured: dict = {}
    if reply.quick_replies:
        structured["quick_replies"] = [asdict(q) for q in reply.quick_replies]
    if reply.buttons:
        structured["buttons"] = [asdict(b) for b in reply.buttons]
    if reply.cards:
        # asdict keeps tuples; JSON-shaped lists make the in-memory value equal the stored one.
        structured["cards"] = [{**asdict(c), "buttons": [asdict(b) for b in c.buttons]} for c in reply.cards]
    return structured


def structured_from_tap(*, payload: str, title: str = "", kind: str = "") -> dict:
    """The ``structured`` value to store with an inbound quick-reply or postback tap."""
    structured = {"payload": payload, "title": title}
    if kind:
        structured["kind"] = kind
    return structured
