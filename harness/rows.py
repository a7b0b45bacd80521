"""Inbox rows made directly (no webhook) for the tests and the benchmarks that need one in a state.

The models are imported when a row is made, not at import, because the benchmarks configure Django
themselves after importing the harness.
"""

from __future__ import annotations

from typing import Any


def inbound_text_make(*, mid: str, page_id: str, psid: str, text: str, fb_timestamp: int, status: str,
                      **fields: Any):
    """One text message's ``InboundMessage`` row, as the webhook keeps it, with ``fields`` on top."""
    from messenger.models import InboundMessage

    return InboundMessage.objects.create(
        mid=mid, page_id=page_id, psid=psid, kind="text", text=text, fb_timestamp=fb_timestamp, status=status,
        **fields,
    )
