"""Reads of the inbound messages and their parts that the pipeline makes, named for what they answer."""

from __future__ import annotations

from django.utils import timezone

from messenger.models import InboundMessage, OutboundPart

# ``inbound_next_for_sender``'s answer when the sender's earliest open message is parked until later.
WAITING = "waiting"


def inbound_get(*, inbound_id: int) -> InboundMessage | None:
    return InboundMessage.objects.filter(id=inbound_id).first()


def inbound_next_for_sender(*, inbound: InboundMessage) -> InboundMessage | str | None:
    """The sender's earliest message that is not final, :data:`WAITING` when that one is parked until
    later (everything behind it waits too, to keep the order), or ``None`` when all are final.

    One query per message answered: this runs once per turn of a drain.
    """
    head = (
        InboundMessage.objects.filter(page_id=inbound.page_id, psid=inbound.psid)
        .exclude(status__in=InboundMessage.FINAL_STATUSES)
        .order_by("fb_timestamp", "id")
        .first()
    )
    if head is None:
        return None
    if head.status == InboundMessage.Status.DEFERRED and head.not_before and head.not_before > timezone.now():
        return WAITING
    return head


def inbound_parts(*, inbound: InboundMessage) -> list[OutboundPart]:
    """The recorded parts of the message's reply, in order (empty before the reply is generated)."""
    return list(inbound.parts.order_by("position"))
