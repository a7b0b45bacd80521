"""Forgetting a user: delete everything stored about one Messenger user, on request.

:func:`user_forget` deletes, in one transaction, the user's inbound rows (with the raw webhook
items they hold) and reply parts, then calls down into the apps that own the rest: their
conversations, messages and cached histories (``conversations.services.conversations_forget``) and
the observability events carrying their PSID hash or one of their rows' ids
(``observability.services.events_forget``). ``manage.py messenger_forget`` and the admin action
"Forget these users" (``messenger.forget_admin``) both call it.

The audit line ``messenger.forget.done`` (logger ``messenger.forget``) records the page, the
counts and who asked, and neither the PSID nor its hash: the hash is stable, so keeping it in the
logs would let anyone with the key follow the forgotten user again.

Not stored, so not deleted here: a sender lock or in-flight marker in Redis (keys that expire
within ``MESSENGER_LEASE_SECONDS``), and rq jobs (they carry a row id only; a job whose row is gone
logs ``messenger.pipeline.missing-row`` and stops).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction

from conversations.models import Conversation
from conversations.services import conversations_forget
from messenger.models import InboundMessage, OutboundPart
from messenger.tally import Tally
from observability.hashing import hash_psid
from observability.services import events_forget

logger = logging.getLogger("messenger.forget")


@dataclass(frozen=True)
class ForgetResult(Tally):
    """How many of each kind were deleted."""

    inbound: int = 0
    parts: int = 0
    conversations: int = 0
    messages: int = 0
    cache_keys: int = 0
    events: int = 0


def user_forget(*, page_id: str, psid: str, actor: str) -> ForgetResult:
    """Delete everything stored about the user ``psid`` of page ``page_id``; what was deleted.

    ``actor`` names who asked (a staff username, ``"command:<os user>"``) for the audit line.
    Rows are matched by page and PSID; events by the PSID's hash, which has no page in it, so the
    user's events on every page go. Forgetting a user with nothing stored deletes nothing and is
    still audited. A message of theirs
    being answered right now loses its row; the pipeline logs that and stops.
    """
    if not page_id or not psid:
        raise ValueError("user_forget needs both page_id and psid")
    with transaction.atomic():
        rows = InboundMessage.objects.filter(page_id=page_id, psid=psid)
        inbound_ids = list(rows.values_list("id", flat=True))
        conversation_ids = list(
            Conversation.objects.filter(page_id=page_id, psid=psid).values_list("id", flat=True)
        )
        deleted = InboundMessage.objects.filter(id__in=inbound_ids).delete()[1]
        conversations, messages, cache_keys = conversations_forget(page_id=page_id, psid=psid)
        events = events_forget(
            psid_hash=hash_psid(psid), inbound_ids=inbound_ids, conversation_ids=conversation_ids
        )
    result = ForgetResult(
        inbound=deleted.get(InboundMessage._meta.label, 0),
        parts=deleted.get(OutboundPart._meta.label, 0),
        conversations=conversations,
        messages=messages,
        cache_keys=cache_keys,
        events=events,
    )
    logger.info("messenger.forget.done", extra={"page_id": page_id, "actor": actor, **result.as_dict()})
    return result
