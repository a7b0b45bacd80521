"""Builders shared by the observability tests: inbound messages and the pipeline's signals."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from django.utils import timezone

from messenger.models import InboundMessage
from observability import signals
from observability.models import Event

RAW_PSID = "7834521190654321"
PAGE_ID = "1122334455667788"

_sequence = itertools.count(1)


def make_inbound(**overrides: Any) -> InboundMessage:
    """A saved text InboundMessage received now, sent by Facebook 800 ms earlier."""
    received_at = overrides.pop("received_at", timezone.now())
    number = next(_sequence)
    fields: dict[str, Any] = {
        "mid": f"m_obs_{number}",
        "page_id": PAGE_ID,
        "psid": RAW_PSID,
        "kind": InboundMessage.Kind.TEXT,
        "text": "hello",
        "fb_timestamp": int((received_at - timedelta(milliseconds=800)).timestamp() * 1000),
        "received_at": received_at,
    }
    fields.update(overrides)
    return InboundMessage.objects.create(**fields)


def send_journey(inbound: InboundMessage, *, failed: bool = False) -> None:
    """Send the signals of one message's full trip through the pipeline, as the pipeline does."""
    signals.send_safely(signals.message_received, sender="messenger.views", inbound=inbound,
                        latency_ms=4.0)
    signals.send_safely(signals.intent_classified, sender="messenger.jobs", inbound=inbound,
                        intent="greeting", confidence=0.92, latency_ms=12.5)
    signals.send_safely(signals.response_generated, sender="messenger.jobs", inbound=inbound,
                        intent="greeting", part_count=2, latency_ms=30.0, timed_out=False)
    if failed:
        signals.send_safely(signals.send_failed, sender="messenger.jobs", inbound=inbound,
                            error_kind="rate_limited", error_code=613, latency_ms=140.0)
    else:
        signals.send_safely(signals.response_sent, sender="messenger.jobs", inbound=inbound,
                            part_count=2, latency_ms=210.0, end_to_end_ms=1500.0,
                            since_receipt_ms=700.0)


def make_event(event_type: str, **fields: Any) -> Event:
    """A saved Event of ``event_type`` (created now unless ``created_at`` is given)."""
    return Event.objects.create(event_type=event_type, **fields)
