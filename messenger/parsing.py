"""Parse a webhook body into typed events, at the edge, so raw dicts never travel further.

Facebook's shape (Webhook Reference, "Common format"): ``{"object": "page", "entry": [{"id", "time",
"messaging": [item, ...]} | {"id", "time", "standby": [item, ...]}]}``. A body may batch several
entries and several items per entry, not always in time order. Each messaging item carries exactly
one event key (``message``, ``postback``, ``delivery``, ...); :data:`EVENT_KEYS` is the one table
from key to kind, and :data:`ACTIONABLE_KINDS` says which kinds we answer. The other kinds we know
(echoes, deliveries, reads, ...) are acknowledged and ignored.

Only the body itself can be refused: a body that is not an object with an ``entry`` list is a
:class:`PayloadError` (400) and ``object`` other than ``page`` is :class:`UnsupportedObject` (404).
Below that, each entry and each item is read on its own. One that can't be read (a field of the wrong
type, an entry that is not an object, no event key we know: Facebook changes shapes, as it did for
stickers and shares in 2026) becomes an :data:`EventKind.UNREADABLE` (or ``UNKNOWN``) event that
carries its raw JSON, the ``problem`` and a stable :func:`unreadable_mid`, so the inbox keeps it for
staff and the rest of the body is answered. Unknown keys inside an item we read are not an error, and
neither are missing optional fields.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class PayloadError(ValueError):
    """The body is JSON but not a webhook body we can read; the message says what is wrong."""


class UnsupportedObject(Exception):
    """The body's ``object`` is not ``page`` (another product's webhook): answered with 404."""


class EventKind(StrEnum):
    MESSAGE = "message"
    ECHO = "echo"
    POSTBACK = "postback"
    DELIVERY = "delivery"
    READ = "read"
    REACTION = "reaction"
    REFERRAL = "referral"
    OPTIN = "optin"
    ACCOUNT_LINKING = "account_linking"
    POLICY_ENFORCEMENT = "policy_enforcement"
    PASS_THREAD_CONTROL = "pass_thread_control"
    TAKE_THREAD_CONTROL = "take_thread_control"
    REQUEST_THREAD_CONTROL = "request_thread_control"
    APP_ROLES = "app_roles"
    GAME_PLAY = "game_play"
    MESSAGE_EDIT = "message_edit"
    STANDBY = "standby"
    UNKNOWN = "unknown"  # no event key we know
    UNREADABLE = "unreadable"  # an entry or item of the wrong shape or types


# The dispatch table: the key of a messaging item -> the kind of event it is. Checked in this order.
EVENT_KEYS: dict[str, EventKind] = {
    "message": EventKind.MESSAGE,
    "postback": EventKind.POSTBACK,
    "delivery": EventKind.DELIVERY,
    "read": EventKind.READ,
    "reaction": EventKind.REACTION,
    "referral": EventKind.REFERRAL,
    "optin": EventKind.OPTIN,
    "account_linking": EventKind.ACCOUNT_LINKING,
    "policy_enforcement": EventKind.POLICY_ENFORCEMENT,
    "policy-enforcement": EventKind.POLICY_ENFORCEMENT,  # the spelling Facebook's reference shows
    "pass_thread_control": EventKind.PASS_THREAD_CONTROL,
    "take_thread_control": EventKind.TAKE_THREAD_CONTROL,
    "request_thread_control": EventKind.REQUEST_THREAD_CONTROL,
    "app_roles": EventKind.APP_ROLES,
    "game_play": EventKind.GAME_PLAY,
    "message_edit": EventKind.MESSAGE_EDIT,
}

# Kinds that reach the inbox and get an answer. Echoes are our own messages; the rest are
# notifications (delivery, read, reaction, ...) or belong to another app (standby, handover).
ACTIONABLE_KINDS = frozenset({EventKind.MESSAGE, EventKind.POSTBACK})
# Kinds kept raw, never answered: the inbox stores them with the status ``unreadable`` for staff.
UNREADABLE_KINDS = frozenset({EventKind.UNKNOWN, EventKind.UNREADABLE})


@dataclass(frozen=True)
class Attachment:
    """One attachment, normalised: ``payload.url``, a top-level ``url`` or ``URL`` all land in ``url``."""

    type: str
    url: str = ""
    title: str = ""
    sticker_id: int | None = None
    coordinates: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "url": self.url,
            "title": self.title,
            "sticker_id": self.sticker_id,
            "coordinates": self.coordinates,
        }


@dataclass(frozen=True)
class MessagingEvent:
    """One messaging item of a webhook body, typed."""

    kind: EventKind
    page_id: str
    sender_id: str
    recipient_id: str
    timestamp: int  # ms since the epoch; the entry's time when the item has none (delivery, read)
    mid: str = ""
    text: str = ""
    payload: str = ""  # a postback's or quick reply's payload
    title: str = ""  # a postback's button title
    is_quick_reply: bool = False
    attachments: tuple[Attachment, ...] = ()
    raw: Any = field(default_factory=dict, repr=False, compare=False)  # the item (or entry) as sent
    position: int = 0  # order of the item in the body, for a stable sort
    problem: str = ""  # why an UNKNOWN or UNREADABLE event could not be read

    @property
    def actionable(self) -> bool:
        return self.kind in ACTIONABLE_KINDS

    @property
    def unreadable(self) -> bool:
        return self.kind in UNREADABLE_KINDS


def _fail(path: str, expected: str) -> PayloadError:
    return PayloadError(f"{path} must be {expected}")


def _opt_str(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _fail(f"{path}.{key}", "a string")
    return value


def _opt_mapping(obj: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _fail(f"{path}.{key}", "an object")
    return value


_MAX_ID_CHARS = 64  # the inbox's page and sender columns
_MAX_MID_CHARS = 255
_MAX_TIMESTAMP = 2**63 - 1  # a bigint column


def _id(value: Any, path: str) -> str:
    """Facebook ids are strings, but some older payloads send numbers; both are accepted."""
    if isinstance(value, bool) or not isinstance(value, str | int) or len(str(value)) > _MAX_ID_CHARS:
        raise _fail(path, f"a string id of at most {_MAX_ID_CHARS} characters")
    return str(value)


def _timestamp(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= _MAX_TIMESTAMP:
        raise _fail(path, "a number (ms since the epoch)")
    return int(value)


def normalise_attachment(raw: Any, path: str = "attachment") -> Attachment:
    """One attachment of a message into an :class:`Attachment` (shape quirks handled here)."""
    if not isinstance(raw, Mapping):
        raise _fail(path, "an object")
    kind = _opt_str(raw, "type", path) or "unknown"
    payload = raw.get("payload")
    payload = payload if isinstance(payload, Mapping) else {}
    url = payload.get("url") or raw.get("url") or raw.get("URL") or ""
    title = raw.get("title") or payload.get("title") or ""
    sticker = payload.get("sticker_id") or raw.get("sticker_id")
    coords = payload.get("coordinates")
    coordinates = None
    if isinstance(coords, Mapping):
        lat, long = coords.get("lat"), coords.get("long")
        if isinstance(lat, int | float) and isinstance(long, int | float):
            coordinates = {"lat": float(lat), "long": float(long)}
    return Attachment(
        type=kind,
        url=url if isinstance(url, str) else "",
        title=title if isinstance(title, str) else "",
        sticker_id=int(sticker) if isinstance(sticker, int | str) and str(sticker).isdigit() else None,
        coordinates=coordinates,
    )


def postback_mid(*, page_id: str, sender_id: str, timestamp: int, payload: str) -> str:
    """A stable id for a postback without ``mid``, so a redelivered postback is recognised."""
    digest = hashlib.sha256(f"{page_id}|{sender_id}|{timestamp}|{payload}".encode()).hexdigest()
    return f"pb.{digest[:48]}"


def unreadable_mid(*, page_id: str, sender_id: str, timestamp: int, raw: Any) -> str:
    """A stable id for an item we could not read, so its redelivery is recognised as the same item.

    Derived from the page, the sender (when readable), the timestamp and a hash of the raw JSON in a
    canonical form (sorted keys), so the same item gets the same id however the body was spaced.
    """
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(f"{page_id}|{sender_id}|{timestamp}|{canonical}".encode()).hexdigest()
    return f"ur.{digest[:48]}"


def _unreadable(raw: Any, *, kind: EventKind, problem: str, page_id: str, entry_time: int, position: int):
    """An event for an entry or item we could not read: its ids as far as they are readable, and why."""
    sender_id, timestamp = "", entry_time
    if isinstance(raw, Mapping):
        sender = raw.get("sender")
        if isinstance(sender, Mapping) and isinstance(sender.get("id"), str | int) \
                and not isinstance(sender.get("id"), bool):
            sender_id = str(sender["id"])[:_MAX_ID_CHARS]
        stamp = raw.get("timestamp")
        if isinstance(stamp, int | float) and not isinstance(stamp, bool) and 0 <= stamp <= _MAX_TIMESTAMP:
            timestamp = int(stamp)
    return MessagingEvent(
        kind=kind,
        page_id=page_id,
        sender_id=sender_id,
        recipient_id="",
        timestamp=timestamp,
        mid=unreadable_mid(page_id=page_id, sender_id=sender_id, timestamp=timestamp, raw=raw),
        raw=raw,
        position=position,
        problem=problem[:255],
    )


def _read_item(item: Any, *, page_id: str, entry_time: int, standby: bool, path: str, position: int):
    """One item as an event; an item that can't be read is an UNREADABLE event, never an error."""
    try:
        event = _parse_item(
            item, page_id=page_id, entry_time=entry_time, standby=standby, path=path, position=position
        )
    except PayloadError as exc:
        return _unreadable(item, kind=EventKind.UNREADABLE, problem=str(exc), page_id=page_id,
                           entry_time=entry_time, position=position)
    if event.kind is EventKind.UNKNOWN:
        keys = ", ".join(sorted(str(k) for k in item if k not in ("sender", "recipient", "timestamp")))
        return _unreadable(item, kind=EventKind.UNKNOWN, problem=f"{path} has no event key we know ({keys})",
                           page_id=page_id, entry_time=entry_time, position=position)
    return event


def _parse_item(item: Any, *, page_id: str, entry_time: int, standby: bool, path: str, position: int):
    if not isinstance(item, Mapping):
        raise _fail(path, "an object")
    sender = _opt_mapping(item, "sender", path) or {}
    recipient = _opt_mapping(item, "recipient", path) or {}
    sender_id = _id(sender["id"], f"{path}.sender.id") if "id" in sender else ""
    recipient_id = _id(recipient["id"], f"{path}.recipient.id") if "id" in recipient else ""
    timestamp = entry_time
    if item.get("timestamp") is not None:
        timestamp = _timestamp(item["timestamp"], f"{path}.timestamp")
    common = {
        "page_id": page_id,
        "sender_id": sender_id,
        "recipient_id": recipient_id,
        "timestamp": timestamp,
        "raw": item,
        "position": position,
    }
    if standby:
        return MessagingEvent(kind=EventKind.STANDBY, **common)
    kind = next((k for key, k in EVENT_KEYS.items() if key in item), EventKind.UNKNOWN)

    if kind is EventKind.MESSAGE:
        message = _opt_mapping(item, "message", path) or {}
        mpath = f"{path}.message"
        if message.get("is_echo"):
            return MessagingEvent(kind=EventKind.ECHO, mid=_opt_str(message, "mid", mpath), **common)
        raw_attachments = message.get("attachments") or []
        if not isinstance(raw_attachments, list):
            raise _fail(f"{mpath}.attachments", "a list")
        quick = _opt_mapping(message, "quick_reply", mpath)
        attachments = tuple(
            normalise_attachment(a, f"{mpath}.attachments[{i}]") for i, a in enumerate(raw_attachments)
        )
        # A 'like' sticker may carry sticker_id on the message itself rather than on the attachment.
        sticker_id = message.get("sticker_id")
        if isinstance(sticker_id, int) and attachments and attachments[0].sticker_id is None:
            first = attachments[0]
            first = Attachment(first.type, first.url, first.title, sticker_id, first.coordinates)
            attachments = (first, *attachments[1:])
        mid = _opt_str(message, "mid", mpath)
        if not mid or len(mid) > _MAX_MID_CHARS:
            raise _fail(f"{mpath}.mid", f"a non-empty string of at most {_MAX_MID_CHARS} characters")
        return MessagingEvent(
            kind=EventKind.MESSAGE,
            mid=mid,
            text=_opt_str(message, "text", mpath),
            payload=_opt_str(quick, "payload", f"{mpath}.quick_reply") if quick else "",
            is_quick_reply=quick is not None,
            attachments=attachments,
            **common,
        )
    if kind is EventKind.POSTBACK:
        postback = _opt_mapping(item, "postback", path) or {}
        ppath = f"{path}.postback"
        payload = _opt_str(postback, "payload", ppath)
        mid = _opt_str(postback, "mid", ppath)[:_MAX_MID_CHARS] or postback_mid(
            page_id=page_id, sender_id=sender_id, timestamp=timestamp, payload=payload
        )
        return MessagingEvent(
            kind=EventKind.POSTBACK,
            mid=mid,
            payload=payload,
            title=_opt_str(postback, "title", ppath),
            **common,
        )
    return MessagingEvent(kind=kind, **common)


def _read_entry(entry: Any, *, path: str, first_position: int) -> list[MessagingEvent]:
    """The events of one entry; an entry we can't read at all is one UNREADABLE event holding it raw."""
    page_id, entry_time = "", 0
    try:
        if not isinstance(entry, Mapping):
            raise _fail(path, "an object")
        page_id = _id(entry["id"], f"{path}.id") if "id" in entry else ""
        entry_time = _timestamp(entry["time"], f"{path}.time") if entry.get("time") is not None else 0
        for key in ("messaging", "standby"):
            if entry.get(key) is not None and not isinstance(entry[key], list):
                raise _fail(f"{path}.{key}", "a list")
    except PayloadError as exc:
        return [_unreadable(entry, kind=EventKind.UNREADABLE, problem=str(exc), page_id=page_id,
                            entry_time=entry_time, position=first_position)]
    events: list[MessagingEvent] = []
    for key, standby in (("messaging", False), ("standby", True)):
        for i_index, item in enumerate(entry.get(key) or ()):
            events.append(
                _read_item(
                    item,
                    page_id=page_id,
                    entry_time=entry_time,
                    standby=standby,
                    path=f"{path}.{key}[{i_index}]",
                    position=first_position + len(events),
                )
            )
    return events


def parse_webhook(data: Any) -> list[MessagingEvent]:
    """Every event of a webhook body, each sender's events in timestamp order.

    Raises :class:`PayloadError` (400) for a body that is not an object with an ``entry`` list and
    :class:`UnsupportedObject` (404) for ``object`` other than ``page``. Entries and items that can't
    be read come back as UNREADABLE/UNKNOWN events (see the module docstring), never as an error.
    """
    if not isinstance(data, Mapping):
        raise PayloadError("body must be a JSON object")
    obj = data.get("object")
    if not isinstance(obj, str):
        raise _fail("object", "a string")
    if obj != "page":
        raise UnsupportedObject(obj)
    entries = data.get("entry")
    if not isinstance(entries, list):
        raise _fail("entry", "a list")
    events: list[MessagingEvent] = []
    for e_index, entry in enumerate(entries):
        events.extend(_read_entry(entry, path=f"entry[{e_index}]", first_position=len(events)))
    # Per sender, Facebook's timestamps decide the order; the body's order breaks ties.
    events.sort(key=lambda ev: (ev.page_id, ev.sender_id, ev.timestamp, ev.position))
    return events
