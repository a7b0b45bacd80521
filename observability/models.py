"""Observability events, one row per pipeline step, with a hashed PSID and latency."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Event(models.Model):
    class Type(models.TextChoices):
        MESSAGE_RECEIVED = "message_received", "Message received"
        INTENT_CLASSIFIED = "intent_classified", "Intent classified"
        RESPONSE_GENERATED = "response_generated", "Response generated"
        RESPONSE_SENT = "response_sent", "Response sent"
        SEND_FAILED = "send_failed", "Send failed"
        MESSAGE_DEFERRED = "message_deferred", "Message deferred"
        MESSAGE_EXPIRED = "message_expired", "Message expired"
        TOKEN_FAILING = "token_failing", "Page token failing"
        GRAPH_USAGE = "graph_usage", "Graph API usage"
        MESSAGE_UNREADABLE = "message_unreadable", "Item unreadable (kept raw)"

    event_type = models.CharField(max_length=32, choices=Type.choices)
    platform = models.CharField(max_length=16, default="messenger")
    psid_hash = models.CharField("hashed PSID", max_length=64, blank=True, default="")
    # Plain ids, not foreign keys: events outlive the rows they describe and must never block them.
    conversation_id = models.BigIntegerField(null=True, blank=True)
    inbound_id = models.BigIntegerField(null=True, blank=True)
    mid = models.CharField(max_length=255, blank=True, default="")
    latency_ms = models.FloatField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["event_type", "created_at"], name="event_type_time_idx"),
            models.Index(fields=["created_at"], name="event_time_idx"),
            models.Index(fields=["psid_hash"], name="event_psid_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} at {self.created_at:%Y-%m-%d %H:%M:%S}"
