"""Echoes settle the parts whose send was in doubt: Facebook's word that a message did go out.

Facebook echoes every message the page sends to the webhook (the ``message_echoes`` subscription):
``message.is_echo: true`` with the page's ``app_id``, the ``mid`` and the ``metadata`` string the
Send API was given. Every part we send carries its token there (``OutboundPart.token``), so an echo
whose metadata is one of our tokens proves that part was delivered, whatever its send answered: a
read timeout, a reset, 1/1357046 or a worker killed mid-send (``messenger.delivery``).

:func:`echoes_record` is called by the webhook once the body is parsed. For each such echo it marks
the part sent with the echo's ``mid`` (a conditional UPDATE: whoever settles the part first writes
its transcript line, the worker or the echo), and wakes a message that was parked waiting for that
echo, so the rest of its reply goes out now rather than at the end of ``MESSENGER_ECHO_WAIT_MS``.
Echoes of anything else (messages typed in the Page Inbox, other apps') are ignored. Never raises:
a failure here must not cost Facebook its 200 (the part is then re-sent after the wait).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from messenger.delivery import part_transcribe
from messenger.inbox import inbox_requeue_one
from messenger.models import InboundMessage, OutboundPart
from messenger.parsing import EventKind, MessagingEvent
from messenger.services import TOKEN_PREFIX, outbound_part_mark_sent

logger = logging.getLogger("messenger.echoes")


def echo_metadata(event: MessagingEvent) -> str:
    """The ``metadata`` string of an echo event ("" when it has none)."""
    message = event.raw.get("message") if isinstance(event.raw, dict) else None
    metadata = message.get("metadata") if isinstance(message, dict) else None
    return metadata if isinstance(metadata, str) else ""


def echoes_record(*, events: Iterable[MessagingEvent]) -> int:
    """Mark as sent every part of ours that these events echo; returns how many parts were settled."""
    try:
        echoed = {
            metadata: event.mid
            for event in events
            if event.kind is EventKind.ECHO and (metadata := echo_metadata(event)).startswith(TOKEN_PREFIX)
        }
        if not echoed:
            return 0
        return _settle(echoed)
    except Exception as exc:  # noqa: BLE001 - never cost the webhook its 200; the wait re-sends instead
        logger.error("messenger.echoes.failed", extra={"error": type(exc).__name__})
        return 0


def _settle(echoed: dict[str, str]) -> int:
    settled = 0
    parts = OutboundPart.objects.filter(token__in=list(echoed)).select_related("inbound")
    for part in parts:
        inbound = part.inbound
        mid = echoed[part.token]
        if part.status == OutboundPart.Status.SENT or not outbound_part_mark_sent(part=part, message_id=mid):
            continue  # its send answered first
        settled += 1
        part_transcribe(inbound=inbound, part=part, message_id=mid)
        logger.info("messenger.echoes.settled", extra=inbound.log_fields(part=part.position))
        if inbound.status == InboundMessage.Status.DEFERRED:
            # Parked waiting for this echo: go on with the rest of the reply now.
            inbox_requeue_one(inbound=inbound, fence=inbound.fence)
    return settled
