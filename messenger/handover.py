"""Conversation Routing: passing the thread to a person, taking it back, and what other apps tell us.

Meta retired the Handover Protocol for Messenger; Conversation Routing keeps its calls and webhooks
(docs/people.md, "Handover"):

- **The user asks for a person** (intent ``human``: the rules engine's "Talk to a person" /
  ``TALK_TO_HUMAN``, or a model's intent). The reply becomes ``texts.HANDOVER_NOTICE``; once it is
  sent, :func:`user_asked_for_person` passes thread control to ``MESSENGER_HANDOVER_APP_ID`` with
  ``POST /me/pass_thread_control`` (``recipient.id``, ``target_app_id``, ``metadata``). Unset, the
  conversation is only marked as waiting for staff, who answer from the admin. Either way it is
  ``handed_over`` and the bot is silent there.
- **Staff give it back** (the admin's action, :func:`thread_take_back`): ``POST
  /me/take_thread_control`` when another app holds the thread, then the bot has it again.
- **Webhooks**: ``messaging_handovers`` (``pass_thread_control`` to us: control passed back;
  ``take_thread_control``: another app took it) and ``standby`` (messages while another app owns
  the thread) update the conversation and its transcript (:func:`handover_event`,
  :func:`standby_record`). A standby message is kept as a final inbox row and never answered.

Graph calls go through the one client (``messenger.graph``) with the page's token; one attempt, no
retries (a failure is logged and the local state still changes: staff can always answer from the
admin). Without a token they are dry runs, logged only.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from conversations.models import Conversation, Message
from conversations.people import conversation_note_add, conversation_thread_passed, conversation_thread_returned
from conversations.services import conversation_get_or_start, message_append
from conversations.staff_handlers import StaffOutcome
from engine.types import Reply
from messenger import texts
from messenger.graph import GraphUnreachable, graph_request
from messenger.models import InboundMessage
from messenger.pages import page_token
from messenger.parsing import EventKind, MessagingEvent
from observability.hashing import hash_psid

logger = logging.getLogger("messenger.handover")

HUMAN_INTENTS = frozenset({"human"})
PASS_METADATA = "The user asked for a person."
TAKE_METADATA = "Staff gave the conversation back to the bot."
UNKNOWN_APP = "other"


def _graph_call(*, path: str, body: dict, page_id: str, context: dict) -> bool:
    """One Graph call for thread control; ``True`` when Facebook accepted it (or a dry run)."""
    token = page_token(page_id=page_id)
    if not token:
        logger.info("messenger.handover.dry-run", extra={**context, "path": path})
        return True
    try:
        response = graph_request("POST", path, json=body, token=token)
    except GraphUnreachable as exc:
        logger.error("messenger.handover.unreachable", extra={**context, "path": path, "error": str(exc)})
        return False
    if response.is_success and not response.has_error_envelope:
        logger.info("messenger.handover.called", extra={**context, "path": path})
        return True
    error = response.error
    logger.error(
        "messenger.handover.refused",
        extra={**context, "path": path, "error_code": error.code, "error_subcode": error.subcode,
               "fbtrace_id": error.fbtrace_id},
    )
    return False


def _app_id_value(app_id: str) -> int | str:
    return int(app_id) if app_id.isdigit() else app_id


def _note(conversation: Conversation, text: str, author: str = "") -> None:
    conversation_note_add(conversation=conversation, text=text, author=author)


# --- the user asks for a person ---------------------------------------------------------------------


def handover_reply(reply: Reply) -> Reply:
    """The reply to send: the handover notice when the user asked for a person, else ``reply``."""
    if reply.intent not in HUMAN_INTENTS or reply.fallback:
        return reply
    return Reply(text=texts.HANDOVER_NOTICE, intent=reply.intent, confidence=reply.confidence)


def user_asked_for_person(*, inbound: InboundMessage) -> None:
    """After the notice went out: pass the thread to ``MESSENGER_HANDOVER_APP_ID``, or wait for staff."""
    conversation = Conversation.objects.filter(pk=inbound.conversation_id).first()
    if conversation is None:
        return
    app_id = settings.MESSENGER_HANDOVER_APP_ID
    if app_id:
        body = {"recipient": {"id": inbound.psid}, "target_app_id": _app_id_value(app_id), "metadata": PASS_METADATA}
        _graph_call(path="/me/pass_thread_control", body=body, page_id=inbound.page_id, context=inbound.log_fields())
    conversation_thread_passed(conversation=conversation, app_id=app_id)
    _note(conversation, f"Thread passed to app {app_id}." if app_id else "Waiting for staff to answer.")


# --- staff give it back -----------------------------------------------------------------------------


def thread_take_back(*, conversation: Conversation, author: str) -> StaffOutcome:
    """The bot has the conversation again; take thread control first when another app holds it."""
    taken = True
    if conversation.thread_owner_app_id:
        body = {"recipient": {"id": conversation.psid}, "metadata": TAKE_METADATA}
        context = {"conversation_id": conversation.pk, "psid_hash": hash_psid(conversation.psid)}
        taken = _graph_call(path="/me/take_thread_control", body=body, page_id=conversation.page_id, context=context)
    conversation_thread_returned(conversation=conversation)
    _note(conversation, "Given back to the bot.", author=author)
    if not taken:
        return StaffOutcome(False, "Given back to the bot, but Facebook refused take_thread_control: see the logs.")
    return StaffOutcome(True, "Given back to the bot.")


# --- webhooks: messaging_handovers and standby --------------------------------------------------------


def _conversation_of(event: MessagingEvent) -> Conversation:
    return conversation_get_or_start(page_id=event.page_id, psid=event.sender_id)[0]


def handover_event(*, event: MessagingEvent) -> None:
    """``pass_thread_control`` (to us: control passed back) or ``take_thread_control`` (taken from us)."""
    if not event.sender_id or event.sender_id == event.page_id:
        return
    conversation = _conversation_of(event)
    raw = event.raw
    if event.kind is EventKind.PASS_THREAD_CONTROL:
        details = raw.get("pass_thread_control") or {}
        new_owner = str(details.get("new_owner_app_id") or "")
        if not settings.MESSENGER_APP_ID or new_owner in ("", settings.MESSENGER_APP_ID):
            conversation_thread_returned(conversation=conversation)
            _note(conversation, "Thread control passed back to the bot.", author=new_owner)
            return
        conversation_thread_passed(conversation=conversation, app_id=new_owner)
        _note(conversation, f"Thread passed to app {new_owner}.", author=new_owner)
    elif event.kind is EventKind.TAKE_THREAD_CONTROL:
        details = raw.get("take_thread_control") or {}
        taker = str(details.get("new_owner_app_id") or UNKNOWN_APP)
        conversation_thread_passed(conversation=conversation, app_id=taker)
        _note(conversation, "Another app took the thread: the bot is silent here.", author=taker)


def standby_record(*, event: MessagingEvent) -> None:
    """A user's message while another app owns the thread: kept, in the transcript, never answered."""
    message = event.raw.get("message")
    if not isinstance(message, dict) or not event.sender_id or event.sender_id == event.page_id:
        return
    mid = str(message.get("mid") or "")
    text = message.get("text") if isinstance(message.get("text"), str) else ""
    attachments = message.get("attachments") if isinstance(message.get("attachments"), list) else []
    kind = InboundMessage.Kind.ATTACHMENTS if attachments else InboundMessage.Kind.TEXT
    sent_at = datetime.fromtimestamp(event.timestamp / 1000, tz=UTC)
    if mid:
        try:
            with transaction.atomic():
                InboundMessage.objects.create(
                    mid=mid, page_id=event.page_id, psid=event.sender_id, kind=kind,
                    text=text, attachments=attachments, raw=dict(event.raw), fb_timestamp=event.timestamp,
                    status=InboundMessage.Status.HANDED_OVER, status_reason="standby: another app has the thread",
                    finished_at=timezone.now(),
                )
        except IntegrityError:
            return  # a redelivery: stored already
    conversation = _conversation_of(event)
    if conversation.status != Conversation.Status.HANDED_OVER:
        conversation_thread_passed(conversation=conversation, app_id=UNKNOWN_APP)
    message_append(conversation=conversation, direction=Message.Direction.IN, text=text,
                   attachments=attachments or None, fb_message_id=mid or None, created_at=sent_at)
    InboundMessage.objects.filter(mid=mid).update(conversation=conversation)
    logger.info("messenger.handover.standby", extra={"mid": mid, "psid_hash": hash_psid(event.sender_id)})
