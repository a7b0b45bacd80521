"""People in a conversation besides the bot: waiting for a person, the bot's pause, who holds the thread.

The states (docs/people.md), all on :class:`~conversations.models.Conversation`:

- ``waiting_since``: a person is expected to answer (a message came too late for the bot, or the
  user asked for a person). The admin lists these first; a staff reply or the give-back clears it.
- ``bot_paused_until``: a person answered from elsewhere (the Page Inbox, another app); the bot
  stays silent until then so it never talks over them.
- ``handed_over`` status with ``thread_owner_app_id``: thread control is with another app
  (Conversation Routing) or with staff here; the bot stores what arrives and does not answer.

Changes of who holds the thread go in the transcript as notes (:func:`conversation_note_add`): not
the engine's history (no cache push, skipped by ``history_items_from_db``) and not activity (the TTL
still counts from the last real message).

Each write is one conditional UPDATE, so a worker and the webhook racing on one row can't undo each
other's change. :func:`conversation_bot_silenced` is the one question the pipeline asks.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db.models import F
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from conversations.models import Conversation, Message
from observability.hashing import hash_psid

logger = logging.getLogger("conversations.people")

Status = Conversation.Status


def _log(event: str, conversation: Conversation, **extra) -> None:
    logger.info(event, extra={"conversation_id": conversation.pk, "psid_hash": hash_psid(conversation.psid), **extra})


def conversation_mark_waiting(*, conversation: Conversation, since: datetime | None = None) -> Conversation:
    """Mark the conversation as waiting for a person; an earlier ``waiting_since`` is kept."""
    since = since or timezone.now()
    Conversation.objects.filter(pk=conversation.pk).update(waiting_since=Coalesce(F("waiting_since"), since))
    conversation.refresh_from_db(fields=["waiting_since"])
    _log("conversations.waiting", conversation)
    return conversation


def conversation_clear_waiting(*, conversation: Conversation) -> Conversation:
    """A person answered: the conversation no longer waits (its status is left as it is)."""
    Conversation.objects.filter(pk=conversation.pk).update(waiting_since=None)
    conversation.waiting_since = None
    return conversation


def conversation_pause_bot(*, conversation: Conversation, until: datetime) -> Conversation:
    """Keep the bot silent until ``until`` (a later pause already set is kept)."""
    Conversation.objects.filter(pk=conversation.pk).update(
        bot_paused_until=Greatest(Coalesce(F("bot_paused_until"), until), until)
    )
    conversation.refresh_from_db(fields=["bot_paused_until"])
    _log("conversations.bot-paused", conversation, until=until.isoformat())
    return conversation


def conversation_thread_passed(
    *, conversation: Conversation, app_id: str, now: datetime | None = None
) -> Conversation:
    """A person has the conversation: ``handed_over``, held by ``app_id`` ("" = staff here), waiting.

    An expired conversation is left as it is (the user's next message starts a new one).
    """
    now = now or timezone.now()
    Conversation.objects.filter(pk=conversation.pk).exclude(status=Status.EXPIRED).update(
        status=Status.HANDED_OVER,
        thread_owner_app_id=app_id,
        waiting_since=Coalesce(F("waiting_since"), now),
    )
    conversation.refresh_from_db(fields=["status", "thread_owner_app_id", "waiting_since"])
    _log("conversations.thread-passed", conversation, app_id=app_id)
    return conversation


def conversation_thread_returned(*, conversation: Conversation) -> Conversation:
    """The bot has the conversation again: ``active``, nobody else holds it, not waiting, not paused.

    Only a ``handed_over`` conversation changes status; the other fields are cleared on any open one.
    """
    open_rows = Conversation.objects.filter(pk=conversation.pk).exclude(status=Status.EXPIRED)
    open_rows.filter(status=Status.HANDED_OVER).update(status=Status.ACTIVE)
    open_rows.update(thread_owner_app_id="", waiting_since=None, bot_paused_until=None)
    conversation.refresh_from_db(fields=["status", "thread_owner_app_id", "waiting_since", "bot_paused_until"])
    _log("conversations.thread-returned", conversation)
    return conversation


def conversation_bot_silenced(*, conversation: Conversation, now: datetime | None = None) -> str:
    """Why the bot must not answer in this conversation now, or ``""`` when it may."""
    now = now or timezone.now()
    if conversation.status == Status.HANDED_OVER:
        if conversation.thread_owner_app_id:
            return f"app {conversation.thread_owner_app_id} has the thread"
        return "a human has this conversation"
    if conversation.bot_paused_until and conversation.bot_paused_until > now:
        return "a person answered from elsewhere; the bot is paused"
    return ""


def conversation_note_add(*, conversation: Conversation, text: str, author: str = "") -> Message:
    """A line in the transcript about the conversation itself (thread passed, given back)."""
    note = Message.objects.create(
        conversation=conversation, direction=Message.Direction.OUT, text=text, role=Message.Role.NOTE, author=author
    )
    Conversation.objects.filter(pk=conversation.pk).update(message_count=F("message_count") + 1)
    return note
