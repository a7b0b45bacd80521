"""Tests for messenger/models.py: the statuses of an inbound message, defined once."""

from __future__ import annotations

from messenger.models import InboundMessage


def test_every_status_is_either_open_or_final_never_both():
    """Each status is in exactly one of OPEN_STATUSES and FINAL_STATUSES, so no row is left in limbo."""
    open_, final = set(InboundMessage.OPEN_STATUSES), set(InboundMessage.FINAL_STATUSES)
    assert open_ | final == set(InboundMessage.Status)
    assert open_ & final == set()


def test_deferred_is_open_and_handed_over_is_final():
    """A parked message still needs work; one a human has is done for the bot."""
    assert InboundMessage.Status.DEFERRED in InboundMessage.OPEN_STATUSES
    assert InboundMessage.Status.HANDED_OVER in InboundMessage.FINAL_STATUSES
