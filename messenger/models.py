"""The durable inbox, and the pages it serves.

Every inbound user message is kept here before Facebook gets its 200.

An :class:`InboundMessage` row is the unit of work of the pipeline and records what happened to it
(``status`` and ``status_reason``). Its :class:`OutboundPart` rows record, part by part, which pieces
of the reply went out, so a job that runs twice never sends a part twice.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from observability.hashing import hash_psid


class Page(models.Model):
    """A Facebook page this channel serves, with its own page access token, encrypted at rest.

    Written only through ``messenger.pages`` (``page_add``, ``page_remove``, ``pages_rotate``), which
    encrypts with ``messenger.token_crypto``; the plaintext token is never a field, so no form,
    serializer, ``repr`` or admin page can show it. ``active=False`` keeps the row but stops serving
    the page: its events are kept as ``unknown_page`` and not answered.
    """

    id = models.CharField("page id", max_length=64, primary_key=True, help_text="Facebook's page id")
    name = models.CharField(max_length=255, blank=True, default="")
    token_encrypted = models.TextField(editable=False, help_text="Fernet ciphertext of the page token")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name or 'Page'} ({self.id})"

    @property
    def token_set(self) -> bool:
        """Whether a token is stored (the admin's flag; never the token itself)."""
        return bool(self.token_encrypted)


class InboundMessage(models.Model):
    class Kind(models.TextChoices):
        TEXT = "text", "Text"
        QUICK_REPLY = "quick_reply", "Quick reply"
        ATTACHMENTS = "attachments", "Attachments"
        POSTBACK = "postback", "Postback"
        UNREADABLE = "unreadable", "Unreadable item (kept raw)"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending (kept, not on a queue)"
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        ANSWERED = "answered", "Answered"
        NO_REPLY = "no_reply", "Needs no reply"
        HANDED_OVER = "handed_over", "Stored; a human has the conversation"
        DEFERRED = "deferred", "Deferred (Send API unavailable)"
        EXPIRED = "expired", "Expired (outside the messaging window)"
        FAILED = "failed", "Failed"
        # A signed item we could not read (wrong types, a shape Facebook changed): kept raw with the
        # problem as status_reason, never answered, so staff can see it and nothing is lost.
        UNREADABLE = "unreadable", "Unreadable (kept raw, not answered)"
        UNKNOWN_PAGE = "unknown_page", "Not answered: no token for its page"

    # The one definition of which statuses end a message's life (the pipeline, the inbox, the admin
    # and the recovery sweep all read these): a final row is never processed or requeued again.
    FINAL_STATUSES = (
        Status.ANSWERED,
        Status.NO_REPLY,
        Status.HANDED_OVER,
        Status.EXPIRED,
        Status.FAILED,
        Status.UNREADABLE,
        Status.UNKNOWN_PAGE,
    )
    OPEN_STATUSES = (Status.PENDING, Status.QUEUED, Status.PROCESSING, Status.DEFERRED)

    # Facebook's message id; postbacks get a stable id derived from their content.
    mid = models.CharField(max_length=255, unique=True)
    page_id = models.CharField(max_length=64)
    psid = models.CharField("PSID", max_length=64)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    text = models.TextField(blank=True, default="")
    payload = models.TextField(blank=True, default="", help_text="Postback or quick-reply payload")
    title = models.CharField(max_length=255, blank=True, default="", help_text="Postback title")
    attachments = models.JSONField(default=list, blank=True)
    raw = models.JSONField(default=dict, help_text="The messaging item as Facebook sent it")
    fb_timestamp = models.BigIntegerField(help_text="Facebook's event time, ms since the epoch")
    received_at = models.DateTimeField(default=timezone.now)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    status_reason = models.CharField(max_length=255, blank=True, default="")
    queue_name = models.CharField(max_length=32, blank=True, default="")
    # The rq job that answers it; empty means the first job, ``inbound-<id>``. Requeues get fresh ids
    # so a job that rq still remembers as started (its worker died) never shadows the new one.
    job_id = models.CharField(max_length=64, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    worker_name = models.CharField(max_length=255, blank=True, default="")
    processing_started_at = models.DateTimeField(null=True, blank=True)
    # A deferred message is not tried again before this time (the circuit's cooldown, a parked send).
    not_before = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The fencing token of the worker that claimed the message last: each claim increments it in a
    # conditional UPDATE, and a part is sent only while the row still carries the sender's own token,
    # so a worker whose claim was overtaken (it lost its lease) can't send (``messenger.services``).
    fence = models.BigIntegerField(default=0)

    # The generated reply, kept so a re-run sends the same parts instead of asking the engine again.
    intent = models.CharField(max_length=64, blank=True, default="")
    confidence = models.FloatField(null=True, blank=True)
    conversation = models.ForeignKey("conversations.Conversation", null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        indexes = [
            models.Index(fields=["page_id", "psid", "fb_timestamp", "id"], name="inbound_sender_idx"),
            models.Index(fields=["status", "received_at"], name="inbound_status_idx"),
            # A sender's open rows only (messenger.retention.inbound_next_open): the drain's lookup
            # stays a few index entries however long that sender's history grows.
            models.Index(
                fields=["page_id", "psid", "fb_timestamp", "id"],
                condition=models.Q(status__in=["pending", "queued", "processing", "deferred"]),
                name="inbound_sender_open_idx",
            ),
            # Retention walks finished rows oldest first (messenger.retention.inbound_prune).
            models.Index(fields=["finished_at"], name="inbound_finished_idx"),
            # The admin list: newest first, its "received" and kind filters (fixed choices, no DISTINCT).
            models.Index(fields=["-received_at", "-id"], name="inbound_received_idx"),
            models.Index(fields=["kind", "received_at"], name="inbound_kind_idx"),
            # Search by text and part of a PSID uses trigram GIN indexes made by migration 0004 on
            # PostgreSQL only (UPPER(col) gin_trgm_ops, the expression Django's icontains compares).
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.mid} ({self.status})"

    def log_fields(self, **extra) -> dict:
        """The ``extra=`` of every log line about this message: its ids, its page and the hashed PSID.

        Never the raw PSID. The page is there because a PSID (and so its hash) is only unique within
        its page.
        """
        psid_hash = hash_psid(self.psid)
        return {"mid": self.mid, "page_id": self.page_id, "psid_hash": psid_hash, "inbound_id": self.id, **extra}


class OutboundPart(models.Model):
    """One Send API call of a reply (a message part or a sender action), recorded as it goes."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        # Handed to the Send API and its outcome not known yet: in doubt once its sender is gone (a
        # timeout, a reset, 1/1357046, a stop mid-send). Settled by its echo, or re-sent after the wait.
        SENDING = "sending", "Sending (in doubt until answered or echoed)"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    inbound = models.ForeignKey(InboundMessage, on_delete=models.CASCADE, related_name="parts")
    position = models.PositiveSmallIntegerField()
    body = models.JSONField(help_text="The Send API 'message' object for this part")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    fb_message_id = models.CharField(max_length=255, blank=True, default="")
    error_kind = models.CharField(max_length=32, blank=True, default="")
    error_code = models.IntegerField(null=True, blank=True)
    # Facebook's trace id of the last failed send, shown in the transcript for a bug report to Meta.
    fbtrace_id = models.CharField(max_length=64, blank=True, default="")
    # Sent as the Send API's ``message.metadata``; Facebook echoes it back (``messenger.echoes``).
    token = models.CharField(max_length=64, blank=True, default="", db_index=True)
    # Send API calls made for this part, and when the last one started (the echo wait runs from it).
    attempts = models.PositiveSmallIntegerField(default=0)
    send_started_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["inbound", "position"], name="outbound_part_position")]
        ordering = ["inbound_id", "position"]

    def __str__(self) -> str:
        return f"Part {self.position} of {self.inbound_id} ({self.status})"


class StaffReply(models.Model):
    """A reply staff wrote in the admin, from the moment it is queued until it is sent or fails.

    The rq job (``messenger.jobs.send_staff_reply``) takes its id; the window rule is applied again
    when it runs (time passes while a send waits out an open circuit), so a reply that would now be
    outside Facebook's rules fails with the reason instead of going out.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        DEFERRED = "deferred", "Deferred (Send API unavailable)"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    conversation = models.ForeignKey("conversations.Conversation", on_delete=models.CASCADE, related_name="+")
    page_id = models.CharField(max_length=64)
    psid = models.CharField("PSID", max_length=64)
    text = models.TextField()
    author = models.CharField(max_length=150, help_text="The staff member's username")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    status_reason = models.CharField(max_length=255, blank=True, default="")
    # What the window rule gave (messenger.window): RESPONSE, or MESSAGE_TAG with HUMAN_AGENT.
    messaging_type = models.CharField(max_length=16, blank=True, default="")
    tag = models.CharField(max_length=32, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    fb_message_id = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "staff replies"

    def __str__(self) -> str:
        return f"Staff reply {self.pk} by {self.author} ({self.status})"
