"""Conversations between our page and one Messenger user (PSID), and their messages."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Conversation(models.Model):
    """One stretch of talk with one sender on one page.

    A sender has at most one open conversation (any status but ``expired``) at a time, enforced by a
    partial unique constraint so two workers racing on a brand-new sender can't create two.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        EXPIRED = "expired", "Expired"
        HANDED_OVER = "handed_over", "Handed over to a human"
        UNREACHABLE = "unreachable", "Recipient unreachable"

    page_id = models.CharField(max_length=64)
    psid = models.CharField("PSID", max_length=64, help_text="Facebook's page-scoped sender id")
    device_id = models.CharField(
        max_length=64, db_index=True, help_text="The monolith's device id this PSID maps to"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    started_at = models.DateTimeField(default=timezone.now)
    last_activity_at = models.DateTimeField(default=timezone.now)
    message_count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["page_id", "psid"],
                condition=~Q(status="expired"),
                name="conversation_one_open_per_sender",
            )
        ]
        indexes = [
            models.Index(fields=["psid", "page_id", "status"], name="conversation_sender_idx"),
            models.Index(fields=["-last_activity_at"], name="conversation_activity_idx"),
            models.Index(fields=["status", "-last_activity_at"], name="conversation_status_idx"),
        ]

    def __str__(self) -> str:
        return f"Conversation {self.pk} ({self.get_status_display()})"


class Message(models.Model):
    """One message in a conversation, inbound from the user or outbound from the bot."""

    class Direction(models.TextChoices):
        IN = "in", "Inbound"
        OUT = "out", "Outbound"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    direction = models.CharField(max_length=3, choices=Direction.choices)
    text = models.TextField(blank=True, default="")
    attachments = models.JSONField(default=list, blank=True)
    # Quick replies, buttons or cards the bot offered, or the payload the user tapped.
    structured = models.JSONField(default=dict, blank=True)
    fb_message_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    intent = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["conversation", "-created_at", "-id"], name="message_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} message {self.pk}"
