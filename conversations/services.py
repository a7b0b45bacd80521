"""Writes to conversations and messages, and the context loading the message handler calls.

Status rules (see docs/conversations.md):

- ``active``: the bot answers. Expires after ``MESSENGER_CONVERSATION_TTL_SECONDS`` of inactivity:
  the next message closes it as ``expired`` and starts a new conversation.
- ``handed_over``: a human has it; the bot stores what arrives but does not answer. It does **not**
  expire by TTL (the bot must not silently take a user back from a slow human); staff give it back.
- ``unreachable``: a send failed because the user can't be reached. When the user writes again they
  are reachable again: it becomes ``active`` (TTL applies as for ``active``).
- ``expired``: closed for good; never reopened.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from conversations import cache
from conversations.models import Conversation, Message
from conversations.selectors import (
    conversation_find_open,
    history_item_from_cached,
    history_items_from_db,
    history_recent,
    message_history_item,
)
from conversations.structured import structured_from_tap
from engine.types import ChatContext
from observability.hashing import hash_psid

logger = logging.getLogger("conversations.services")

# uuid5(NAMESPACE_DNS, "messenger.device.chatbot"), fixed here so it can never drift: changing it would
# give every Messenger user a new device id.
DEVICE_ID_NAMESPACE = uuid.UUID("b6a1118d-3b83-526c-97b6-1253d6eb6a20")
OPEN_CONSTRAINT = "conversation_one_open_per_sender"
_START_ATTEMPTS = 4


class ConversationError(Exception):
    """Base of this app's expected failures."""


class ConversationClosedError(ConversationError):
    """The conversation is expired; it can't be handed over or given back."""


class ConversationRaceError(ConversationError):
    """No open conversation could be found or started after several attempts (should not happen)."""


@dataclass(frozen=True)
class LoadedContext:
    """What :func:`context_load` gives the handler: the rows it touched and the engine's context."""

    conversation: Conversation
    message: Message
    context: ChatContext
    created: bool


def device_id_for(*, page_id: str, psid: str) -> str:
    """The monolith's device id for a Messenger user: ``str(uuid5(DEVICE_ID_NAMESPACE, "<page>:<psid>"))``.

    Deterministic and one to one (a PSID is only unique per page, hence both parts), so the same user
    always gets the same 36-character id and other parts of the monolith see them like any device.
    """
    return str(uuid.uuid5(DEVICE_ID_NAMESPACE, f"{page_id}:{psid}"))


def _is_open_constraint_violation(exc: IntegrityError) -> bool:
    diag = getattr(exc.__cause__, "diag", None)
    name = getattr(diag, "constraint_name", None)
    # Other backends don't expose the name; there the constraint is the only one the INSERT can break.
    return name is None or name == OPEN_CONSTRAINT


def conversation_get_or_start(
    *, page_id: str, psid: str, now: datetime | None = None
) -> tuple[Conversation, bool]:
    """The sender's open conversation, or a new one (``created=True``).

    An ``active`` or ``unreachable`` conversation idle for longer than the TTL is closed as
    ``expired`` (conditionally: only if nobody touched it since we read it) and a new one starts. A
    ``handed_over`` one is returned as is, whatever its age; an ``unreachable`` one becomes
    ``active``. Race-safe: two workers on a brand-new sender both try to INSERT, the partial unique
    constraint refuses the second, which rolls back its savepoint and reads the winner's row.

    Cost for a returning user whose conversation is live: one SELECT.
    """
    now = now or timezone.now()
    ttl = timedelta(seconds=settings.MESSENGER_CONVERSATION_TTL_SECONDS)
    for _attempt in range(_START_ATTEMPTS):
        conversation = conversation_find_open(page_id=page_id, psid=psid)
        if conversation is None:
            try:
                with transaction.atomic():
                    conversation = Conversation.objects.create(
                        page_id=page_id,
                        psid=psid,
                        device_id=device_id_for(page_id=page_id, psid=psid),
                        status=Conversation.Status.ACTIVE,
                        started_at=now,
                        last_activity_at=now,
                    )
                    transaction.on_commit(
                        partial(cache.history_prime_empty, conversation_id=conversation.pk), robust=True
                    )
            except IntegrityError as exc:
                if not _is_open_constraint_violation(exc):
                    raise
                logger.info(
                    "conversations.start.race-lost",
                    extra={"psid_hash": hash_psid(psid), "page_id": page_id},
                )
                continue
            logger.info(
                "conversations.started",
                extra={"psid_hash": hash_psid(psid), "conversation_id": conversation.pk},
            )
            return conversation, True

        if conversation.status == Conversation.Status.HANDED_OVER:
            return conversation, False

        if conversation.last_activity_at < now - ttl:
            expired = Conversation.objects.filter(
                pk=conversation.pk,
                status=conversation.status,
                last_activity_at=conversation.last_activity_at,
            ).update(status=Conversation.Status.EXPIRED)
            if expired:
                transaction.on_commit(
                    partial(cache.history_forget, conversation_id=conversation.pk), robust=True
                )
                logger.info(
                    "conversations.expired",
                    extra={"psid_hash": hash_psid(psid), "conversation_id": conversation.pk},
                )
            # Expired by us or by a concurrent worker, or touched meanwhile: read again either way.
            continue

        if conversation.status == Conversation.Status.UNREACHABLE:
            Conversation.objects.filter(pk=conversation.pk, status=Conversation.Status.UNREACHABLE).update(
                status=Conversation.Status.ACTIVE
            )
            conversation.status = Conversation.Status.ACTIVE
            logger.info(
                "conversations.reachable-again",
                extra={"psid_hash": hash_psid(psid), "conversation_id": conversation.pk},
            )
        return conversation, False
    raise ConversationRaceError(f"no open conversation after {_START_ATTEMPTS} attempts")


def _message_append(
    *,
    conversation: Conversation,
    direction: str,
    text: str,
    attachments: list | None,
    structured: dict | None,
    fb_message_id: str | None,
    intent: str,
    created_at: datetime | None,
    role: str = "",
    author: str = "",
) -> tuple[Message, bool]:
    """:func:`message_append`, also saying whether the row is new (``False``: ``fb_message_id`` existed)."""
    if direction not in Message.Direction.values:
        raise ValueError(f"direction must be one of {Message.Direction.values}, not {direction!r}")
    created_at = created_at or timezone.now()
    fb_message_id = fb_message_id or None  # "" would collide with every other empty id
    try:
        with transaction.atomic():
            message = Message.objects.create(
                conversation=conversation,
                direction=direction,
                text=text,
                attachments=attachments or [],
                structured=structured or {},
                fb_message_id=fb_message_id,
                intent=intent,
                role=role or (Message.Role.USER if direction == Message.Direction.IN else Message.Role.BOT),
                author=author,
                created_at=created_at,
            )
            Conversation.objects.filter(pk=conversation.pk).update(
                message_count=F("message_count") + 1,
                last_activity_at=Greatest(F("last_activity_at"), created_at),
            )
            transaction.on_commit(
                partial(
                    cache.history_push,
                    conversation_id=conversation.pk,
                    item=message_history_item(message=message),
                ),
                robust=True,
            )
    except IntegrityError:
        existing = (
            Message.objects.select_related("conversation").filter(fb_message_id=fb_message_id).first()
            if fb_message_id
            else None
        )
        if existing is None:
            raise
        return existing, False
    # Keep the caller's instance roughly in step without another query (the row is authoritative).
    conversation.message_count += 1
    conversation.last_activity_at = max(conversation.last_activity_at, created_at)
    return message, True


def message_append(
    *,
    conversation: Conversation,
    direction: str,
    text: str = "",
    attachments: list | None = None,
    structured: dict | None = None,
    fb_message_id: str | None = None,
    intent: str = "",
    created_at: datetime | None = None,
    role: str = "",
    author: str = "",
) -> Message:
    """Store one message and bump the conversation's ``message_count`` and ``last_activity_at``.

    Atomic (INSERT and UPDATE in one transaction or savepoint). Idempotent on ``fb_message_id``: if
    that id is already stored, the existing row is returned and nothing changes. The Redis history
    is updated only after the transaction commits, so a rollback leaves the cache untouched.
    ``direction`` is ``"in"`` or ``"out"`` (``Message.Direction``); ``role`` (``Message.Role``,
    default user or bot by direction) and ``author`` say who wrote it.
    """
    message, _new = _message_append(
        conversation=conversation,
        direction=direction,
        text=text,
        attachments=attachments,
        structured=structured,
        fb_message_id=fb_message_id,
        intent=intent,
        created_at=created_at,
        role=role,
        author=author,
    )
    return message


def _context_for_stored(*, message: Message, psid: str, payload: str) -> LoadedContext:
    """Rebuild the context a stored inbound message's first run saw (a re-run of the same job)."""
    conversation = message.conversation
    items = history_items_from_db(
        conversation_id=conversation.pk,
        limit=int(settings.MESSENGER_HISTORY_LIMIT),
        before_id=message.pk,
    )
    # No earlier message means this one opened the conversation: the first run saw a new one.
    if items or int(settings.MESSENGER_HISTORY_LIMIT) > 0:
        first = not items
    else:
        first = not Message.objects.filter(conversation_id=conversation.pk, id__lt=message.pk).exists()
    context = ChatContext(
        psid_hash=hash_psid(psid),
        conversation_id=conversation.pk,
        text=message.text,
        history=tuple(history_item_from_cached(item) for item in items),
        payload=payload,
        is_new_conversation=first,
    )
    return LoadedContext(conversation=conversation, message=message, context=context, created=False)


def context_load(
    *,
    page_id: str,
    psid: str,
    text: str,
    payload: str = "",
    fb_message_id: str | None = None,
    attachments: list | None = None,
    structured: dict | None = None,
    now: datetime | None = None,
    first_run: bool = False,
) -> LoadedContext:
    """Get or start the sender's conversation, read its recent history, store the inbound message.

    The history is what came *before* this message: the last ``MESSENGER_HISTORY_LIMIT`` items,
    oldest first. A ``payload`` (postback or quick reply) is stored as
    ``structured={"payload": ..., "title": text}`` unless ``structured`` is given.

    Idempotent on ``fb_message_id``: when the message is already stored (the job runs again) nothing
    is appended and the context is rebuilt from the database as its first run saw it (history before
    it; ``is_new_conversation`` true if it opened its conversation; ``created`` false).

    Database cost for a returning user on a cache hit (checked by the tests): the loading part is at
    most two SELECTs (the ``fb_message_id`` look-up, skipped without an id or on a ``first_run``, and
    the open conversation), history costs none; then the append is one INSERT and one UPDATE in one
    transaction (BEGIN, INSERT, UPDATE, COMMIT: six statements in all, or a savepoint inside a
    caller's transaction). A cache miss adds one SELECT; a new sender adds the conversation's INSERT.
    ``first_run``: no earlier run can have stored it; if one did, the unique id still finds it."""
    now = now or timezone.now()
    fb_message_id = fb_message_id or None
    if fb_message_id and not first_run:
        stored = Message.objects.select_related("conversation").filter(fb_message_id=fb_message_id).first()
        if stored is not None:
            logger.info(
                "conversations.context.rerun", extra={"mid": fb_message_id, "psid_hash": hash_psid(psid)}
            )
            return _context_for_stored(message=stored, psid=psid, payload=payload)

    conversation, created = conversation_get_or_start(page_id=page_id, psid=psid, now=now)
    history = () if created else tuple(history_recent(conversation=conversation))
    if structured is None and payload:
        structured = structured_from_tap(payload=payload, title=text)
    message, new = _message_append(
        conversation=conversation,
        direction=Message.Direction.IN,
        text=text,
        attachments=attachments,
        structured=structured,
        fb_message_id=fb_message_id,
        intent="",
        created_at=now,
    )
    if not new:
        # Another worker stored the same message between our look-up and our INSERT.
        return _context_for_stored(message=message, psid=psid, payload=payload)

    context = ChatContext(
        psid_hash=hash_psid(psid),
        conversation_id=conversation.pk,
        text=text,
        history=history,
        payload=payload,
        is_new_conversation=created,
    )
    return LoadedContext(conversation=conversation, message=message, context=context, created=created)


def _transition(
    *, conversation: Conversation, to: str, allowed_from: tuple[str, ...], event: str
) -> Conversation:
    """Move ``conversation`` to ``to`` if its current status allows; otherwise leave it. One UPDATE."""
    changed = Conversation.objects.filter(pk=conversation.pk, status__in=allowed_from).update(status=to)
    conversation.refresh_from_db(fields=["status", "last_activity_at", "message_count"])
    if changed:
        logger.info(
            event,
            extra={"conversation_id": conversation.pk, "psid_hash": hash_psid(conversation.psid)},
        )
    return conversation


def conversation_hand_over(*, conversation: Conversation) -> Conversation:
    """Hand the conversation to a human: the bot stops auto-replying, but still stores what arrives.

    From ``active`` or ``unreachable``; already ``handed_over`` is a no-op. Raises
    :class:`ConversationClosedError` for an expired conversation (the user's next message starts a
    new one; hand that one over instead).
    """
    conversation = _transition(
        conversation=conversation,
        to=Conversation.Status.HANDED_OVER,
        allowed_from=(Conversation.Status.ACTIVE, Conversation.Status.UNREACHABLE),
        event="conversations.handed-over",
    )
    if conversation.status == Conversation.Status.EXPIRED:
        raise ConversationClosedError(f"conversation {conversation.pk} is expired")
    return conversation


def conversation_give_back(*, conversation: Conversation) -> Conversation:
    """Give a handed-over conversation back to the bot (``active``); the bot answers again.

    Other open statuses are left as they are; :class:`ConversationClosedError` for an expired one.
    ``last_activity_at`` is not touched: the TTL still counts from the last message.
    """
    conversation = _transition(
        conversation=conversation,
        to=Conversation.Status.ACTIVE,
        allowed_from=(Conversation.Status.HANDED_OVER,),
        event="conversations.given-back",
    )
    if conversation.status == Conversation.Status.EXPIRED:
        raise ConversationClosedError(f"conversation {conversation.pk} is expired")
    return conversation


def conversation_mark_unreachable(*, conversation: Conversation) -> Conversation:
    """Record that a send failed because the user can't be reached (blocked the page, left, ...).

    Only an ``active`` conversation changes (a handed-over one stays with its human; an expired one
    stays closed); the user's next message makes it ``active`` again.
    """
    return _transition(
        conversation=conversation,
        to=Conversation.Status.UNREACHABLE,
        allowed_from=(Conversation.Status.ACTIVE,),
        event="conversations.unreachable",
    )


# --- retention and erasure (called by the channel's prune and forget services) -------------------


def conversations_prune(*, before: datetime, batch_size: int, dry_run: bool = False) -> tuple[int, int]:
    """Delete conversations inactive since before ``before``, and their messages, in batches.

    Returns ``(conversations, messages)`` deleted (or, with ``dry_run``, that would be). Messages go
    first, ``batch_size`` per short transaction (select ids, delete by id); then the conversations.
    """
    old = Conversation.objects.filter(last_activity_at__lt=before)
    old_messages = Message.objects.filter(conversation__last_activity_at__lt=before)
    if dry_run:
        return old.count(), old_messages.count()
    counts = [0, 0]
    for index, (model, queryset) in enumerate(((Message, old_messages), (Conversation, old))):
        while True:
            with transaction.atomic():
                ids = list(queryset.order_by().values_list("id", flat=True)[:batch_size])
                if not ids:
                    break
                counts[index] += model.objects.filter(id__in=ids).delete()[1].get(model._meta.label, 0)
    messages, conversations = counts
    return conversations, messages


def conversations_forget(*, page_id: str, psid: str) -> tuple[int, int, int]:
    """Delete every conversation of one user, their messages and cached histories.

    Returns ``(conversations, messages, cache_keys)``. The cache keys go at once, not on commit:
    a cache emptied by a transaction that then rolls back costs one database read, nothing more.
    """
    ids = list(Conversation.objects.filter(page_id=page_id, psid=psid).values_list("id", flat=True))
    messages = Message.objects.filter(conversation_id__in=ids).delete()[0]
    conversations = Conversation.objects.filter(id__in=ids).delete()[1].get(Conversation._meta.label, 0)
    keys = sum(cache.history_forget(conversation_id=conversation_id) for conversation_id in ids)
    return conversations, messages, keys
