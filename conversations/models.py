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
    # People in the loop (docs/people.md). Set while a person is expected to answer: a message came
    # too late for the bot, or the user asked for a person. Cleared by a staff reply or the give-back.
    waiting_since = models.DateTimeField(null=True, blank=True)
    # A person answered from elsewhere (the Page Inbox, another app): the bot is silent until then.
    bot_paused_until = models.DateTimeField(null=True, blank=True)
    # The app that holds the thread (Conversation Routing) when it is not us; empty when we do.
    thread_owner_app_id = models.CharField(max_length=32, blank=True, default="")

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
            # The admin's "waiting for a person" filter reads the few waiting rows only.
            models.Index(
                fields=["waiting_since"],
                condition=Q(waiting_since__isnull=False),
                name="conversation_waiting_idx",
            ),
            # Search by part of a PSID and by message text: trigram GIN indexes made by migration 0003
            # on PostgreSQL only (UPPER(col) gin_trgm_ops, the expression Django's icontains compares).
        ]

    def __str__(self) -> str:
        return f"Conversation {self.pk} ({self.get_status_display()})"


class Message(models.Model):
    """One message in a conversation, inbound from the user or outbound from the bot or a person."""

    class Direction(models.TextChoices):
        IN = "in", "Inbound"
        OUT = "out", "Outbound"

    class Role(models.TextChoices):
        USER = "user", "User"
        BOT = "bot", "Bot"
        STAFF = "staff", "Staff (admin)"
        PERSON = "person", "A person elsewhere (Page Inbox, another app)"
        NOTE = "note", "Note (thread control)"

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
    # Who wrote it; empty on rows stored before roles existed (then the direction says user or bot).
    role = models.CharField(max_length=8, choices=Role.choices, blank=True, default="")
    # The staff member's username, or the app id an outbound message came from.
    author = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["conversation", "-created_at", "-id"], name="message_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} message {self.pk}"

    @property
    def role_label(self) -> str:
        """Who wrote it, for the transcript: ``User``, ``Bot``, ``Staff (alice)``, ``Person (app 1)``..."""
        role = self.role or (self.Role.USER if self.direction == self.Direction.IN else self.Role.BOT)
        label = {"staff": "Staff", "person": "Person", "note": "Note"}.get(role, self.Role(role).label)
        return f"{label} ({self.author})" if self.author else label
