"""Reads of the inbound messages and their parts that the pipeline makes, named for what they answer."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone

from messenger.models import InboundMessage, OutboundPart

# ``inbound_next_for_sender``'s answer when the sender's earliest open message is parked until later.
WAITING = "waiting"


def inbound_get(*, inbound_id: int) -> InboundMessage | None:
    return InboundMessage.objects.filter(id=inbound_id).first()


def inbound_open_for_sender(*, page_id: str, psid: str) -> QuerySet[InboundMessage]:
    """A sender's open messages in the order they are answered.

    Filtering on the open statuses (not excluding the final ones) lets PostgreSQL use the partial
    index ``inbound_sender_open_idx``: the lookup reads that sender's open rows, not their history.
    """
    return InboundMessage.objects.filter(
        page_id=page_id, psid=psid, status__in=InboundMessage.OPEN_STATUSES
    ).order_by("fb_timestamp", "id")


def inbound_next_for_sender(*, inbound: InboundMessage) -> InboundMessage | str | None:
    """The sender's earliest message that is not final, :data:`WAITING` when that one is parked until
    later (everything behind it waits too, to keep the order), or ``None`` when all are final.

    One query per message answered: this runs once per turn of a drain.
    """
    head = inbound_open_for_sender(page_id=inbound.page_id, psid=inbound.psid).first()
    if head is None:
        return None
    if head.status == InboundMessage.Status.DEFERRED and head.not_before and head.not_before > timezone.now():
        return WAITING
    return head


def inbound_parts(*, inbound: InboundMessage) -> list[OutboundPart]:
    """The recorded parts of the message's reply, in order (empty before the reply is generated)."""
    return list(inbound.parts.order_by("position"))
