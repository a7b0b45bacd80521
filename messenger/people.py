"""People elsewhere: replies sent from the Page Inbox or another app, and the bot's pause after them.

Every message the page sends comes back as an echo with the sending ``app_id``. An echo is a
person's message (docs/people.md, "The pause") when it did not come from this app:

- its ``app_id`` is not ``MESSENGER_APP_ID`` (another app, or the Page Inbox, 263902037430900), or
  it has no ``app_id`` (the Page Inbox in some shapes);
- with ``MESSENGER_APP_ID`` unset we can't tell our own ``app_id`` from another's, so only an echo
  without one or from the Page Inbox or ``MESSENGER_HANDOVER_APP_ID`` counts (set the setting!);
- an echo whose ``mid`` we already recorded (our own send, a redelivery) never counts.

Such an echo is recorded in the transcript as a person's message and the bot stays silent in that
conversation for ``MESSENGER_HUMAN_PAUSE_MINUTES`` (0: no pause), so it never talks over them; a
person answering also clears "waiting for a person". Echoes of this app's own sends are left to the
echo reconciliation of our sends (``messenger.echoes``): they are not recorded twice.

:func:`people_events_handle` is the webhook's one call (after the user's messages are kept, before
their jobs are queued, so a pause is stored before the next reply is decided): echoes here, standby
and handover events in ``messenger.handover``. A failure on one event is logged, never the body's.
:func:`inbound_record_too_late` is the pipeline's: a message the bot may no longer answer is still
in the transcript, and its conversation waits for a person.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from conversations.models import Conversation, Message
from conversations.people import conversation_clear_waiting, conversation_mark_waiting, conversation_pause_bot
from conversations.services import conversation_get_or_start, message_append
from messenger import handover, replies
from messenger.models import InboundMessage, OutboundPart
from messenger.parsing import EventKind, MessagingEvent
from observability.hashing import hash_psid

logger = logging.getLogger("messenger.people")

PAGE_INBOX_APP_ID = "263902037430900"


def user_last_message_at(*, page_id: str, psid: str) -> datetime | None:
    """When the user last wrote to the page (Facebook's time of their latest kept message), or ``None``."""
    latest = InboundMessage.objects.filter(page_id=page_id, psid=psid).aggregate(ts=Max("fb_timestamp"))["ts"]
    return None if latest is None else datetime.fromtimestamp(latest / 1000, tz=UTC)


def echo_author(*, raw_message: dict) -> str | None:
    """Who sent an echoed message if it was a person (``"Page Inbox"``, ``"app <id>"``), else ``None``."""
    app_id = str(raw_message.get("app_id") or "")
    ours = settings.MESSENGER_APP_ID
    if not app_id:
        return "Page Inbox"
    if ours:
        if app_id == ours:
            return None
    elif app_id not in (PAGE_INBOX_APP_ID, settings.MESSENGER_HANDOVER_APP_ID):
        return None
    return "Page Inbox" if app_id == PAGE_INBOX_APP_ID else f"app {app_id}"


def _already_ours(mid: str) -> bool:
    return bool(mid) and (
        OutboundPart.objects.filter(fb_message_id=mid).exists() or Message.objects.filter(fb_message_id=mid).exists()
    )


def echo_record(*, event: MessagingEvent) -> Message | None:
    """Record a person's echoed message and pause the bot; ``None`` for an echo that is not a person's."""
    message = event.raw.get("message")
    psid = event.recipient_id
    if not isinstance(message, dict) or not psid or psid == event.page_id:
        return None
    author = echo_author(raw_message=message)
    mid = str(message.get("mid") or "")
    if author is None or _already_ours(mid):
        return None
    conversation, _created = conversation_get_or_start(page_id=event.page_id, psid=psid)
    text = message.get("text") if isinstance(message.get("text"), str) else ""
    attachments = message.get("attachments") if isinstance(message.get("attachments"), list) else None
    recorded = message_append(
        conversation=conversation,
        direction=Message.Direction.OUT,
        text=text,
        attachments=attachments,
        fb_message_id=mid or None,
        role=Message.Role.PERSON,
        author=author,
        created_at=datetime.fromtimestamp(event.timestamp / 1000, tz=UTC) if event.timestamp else None,
    )
    minutes = int(settings.MESSENGER_HUMAN_PAUSE_MINUTES)
    if minutes > 0:
        conversation_pause_bot(conversation=conversation, until=timezone.now() + timedelta(minutes=minutes))
    conversation_clear_waiting(conversation=conversation)
    logger.info("messenger.people.echo-recorded", extra={"mid": mid, "psid_hash": hash_psid(psid), "author": author})
    return recorded


_HANDLERS = {
    EventKind.ECHO: lambda event: echo_record(event=event),
    EventKind.PASS_THREAD_CONTROL: lambda event: handover.handover_event(event=event),
    EventKind.TAKE_THREAD_CONTROL: lambda event: handover.handover_event(event=event),
}


def _standby(event: MessagingEvent) -> None:
    message = event.raw.get("message")
    if isinstance(message, dict) and message.get("is_echo"):
        echo_record(event=event)
    else:
        handover.standby_record(event=event)


def people_events_handle(*, events: Sequence[MessagingEvent]) -> int:
    """Apply every echo, standby and handover event of a webhook body; returns how many were handled."""
    handled = 0
    for event in events:
        handler = _standby if event.kind is EventKind.STANDBY else _HANDLERS.get(event.kind)
        if handler is None:
            continue
        try:
            handler(event)
            handled += 1
        except Exception as exc:
            extra = {"kind": event.kind.value, "error": type(exc).__name__}
            logger.exception("messenger.people.event-failed", extra=extra)
    return handled


def inbound_record_too_late(*, inbound: InboundMessage) -> Conversation | None:
    """A message outside the bot's window: in the transcript, its conversation waiting for a person."""
    loaded = replies.reply_context_load(inbound=inbound)
    conversation = loaded.conversation
    inbound.conversation_id = conversation.id
    conversation_mark_waiting(
        conversation=conversation, since=datetime.fromtimestamp(inbound.fb_timestamp / 1000, tz=UTC)
    )
    return conversation
