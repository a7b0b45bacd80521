"""The pipeline's signals: observability's vocabulary, one per ``observability.Event`` type.

They are defined here, at the bottom of the project, so the channel (``messenger``) sends them and
``observability`` records them (:mod:`observability.receivers`) without importing any app above it.
Every signal is sent with ``sender=`` the function that emits it and keyword arguments:

- ``message_received``: ``inbound`` (the kept inbound message: a ``messenger.models.InboundMessage``,
  read duck-typed), ``latency_ms`` (time the webhook took to keep it, may be ``None``). The webhook
  itself does not send it, nor ``message_unreadable``: it writes both events in the statement that
  keeps the rows (``messenger.inbox_insert``, one round trip per body), with the same fields
  (:func:`observability.services.event_build`). The signals stay for any other sender.
- ``intent_classified``: ``inbound``, ``intent`` (str), ``confidence`` (float), ``latency_ms``.
- ``response_generated``: ``inbound``, ``intent``, ``part_count`` (int), ``latency_ms``, ``timed_out``.
- ``response_sent``: ``inbound``, ``part_count``, ``latency_ms`` (this step), ``end_to_end_ms``
  (from Facebook's event timestamp), ``since_receipt_ms`` (from our receipt).
- ``send_failed``: ``inbound``, ``error_kind`` (str), ``error_code`` (int | None), ``latency_ms``.
- ``message_deferred``: ``inbound``, ``reason`` (str), ``retry_in_ms`` (int).
- ``message_expired``: ``inbound``, ``reason`` (str).
- ``token_failing``: ``page_id`` (str), ``error_code`` (int | None), ``fingerprint`` (an HMAC of the
  token, never the token): sent once per incident, when a page's token starts failing.
- ``graph_usage_observed``: ``page_id`` (str), ``usage`` (dict: ``app``, ``page``, ``business``, the
  figures of Meta's usage headers): sent at most once a minute per page.
- ``message_unreadable``: ``inbound`` (the row kept raw with the status ``unreadable``), ``reason``
  (str: what could not be read, e.g. ``entry[0].messaging[1].message.text must be a string``).

Send them with :func:`send_safely`: a receiver that raises is logged and never stops a message.
"""

from __future__ import annotations

import logging

from django.dispatch import Signal

# The log name ops already alert on (``messenger.signals.receiver-failed``, docs/observability.md):
# kept as it was when the signals lived in the channel, so moving them changes no log line.
logger = logging.getLogger("messenger.signals")

message_received = Signal()
intent_classified = Signal()
response_generated = Signal()
response_sent = Signal()
send_failed = Signal()
message_deferred = Signal()
message_expired = Signal()
token_failing = Signal()
graph_usage_observed = Signal()
message_unreadable = Signal()


def send_safely(signal: Signal, sender: object, **kwargs) -> None:
    """Send ``signal`` to every receiver; a failing receiver is logged, never raised."""
    for receiver, result in signal.send_robust(sender=sender, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "messenger.signals.receiver-failed",
                exc_info=(type(result), result, result.__traceback__),
                extra={"receiver": getattr(receiver, "__qualname__", repr(receiver))},
            )
