"""Facebook's Graph API answers on disk (``tests/fixtures/graph``), shared by the Graph client tests."""

from __future__ import annotations

import json
from pathlib import Path

from messenger.graph_errors import SendErrorKind

GRAPH_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "graph"


def graph(name: str) -> dict:
    """The parsed JSON of ``tests/fixtures/graph/<name>.json``."""
    return json.loads((GRAPH_FIXTURES / f"{name}.json").read_text())


# Every Send API error fixture, the HTTP status Facebook answers it with, and what it must become.
ERROR_FIXTURES = {
    "send_error_temporary": (400, SendErrorKind.TRANSIENT, 1200, 2018024, "FTsr5khdiKl"),
    "send_error_service_unavailable": (503, SendErrorKind.TRANSIENT, 2, None, "DRK+4tBKnaY"),
    "send_error_rate_limit": (400, SendErrorKind.RATE_LIMITED, 613, None, "C8eF69zBeUS"),
    "send_error_page_rate_limit": (400, SendErrorKind.RATE_LIMITED, 32, None, ""),
    "send_error_user_unavailable": (400, SendErrorKind.RECIPIENT_UNAVAILABLE, 551, 1545041, "G3GRmtpZiq6"),
    "send_error_outside_window": (400, SendErrorKind.OUTSIDE_WINDOW, 10, 2018278, "AbCdEfGhIjK"),
    "send_error_outside_window_legacy_2018065": (
        400,
        SendErrorKind.OUTSIDE_WINDOW,
        10,
        2018065,
        "H/vnkB0t7Fk",
    ),
    "send_error_no_matching_user": (400, SendErrorKind.NO_SUCH_USER, 100, None, "HBjp0Pu1DOb"),
    "send_error_invalid_token": (400, SendErrorKind.AUTH, 190, 1234567, "BLBz/WZt8dN"),
    "send_error_token_expired": (400, SendErrorKind.AUTH, 190, 463, "AXS25JPViBb5AY5tP5EzTnD"),
}
