"""What the staff inbox shows about the channel: markers on the transcript, in words staff understand.

The conversation admin can't import the channel (the arrows point down), so the channel registers
these two functions in ``conversations.staff_handlers`` next to the reply and give-back handlers:

- :func:`transcript_markers`: for each user message that was not answered normally (failed,
  deferred, expired, handed over), what happened in a sentence, Facebook's trace id when a send
  failed, and the inbound row's admin page. Two queries whatever the transcript's length.
- :func:`staff_reply_preview`: how a staff reply written now would go (``messenger.window.send_policy``,
  the same rule the send applies), shown above the reply box.

``status_reason`` is written for developers ("recipient: recipient_unavailable (code 551)");
:func:`reason_plain` maps it to a sentence, keeping the developer text next to it for reports.
"""

from __future__ import annotations

from django.urls import reverse
from django.utils import timezone

from conversations.models import Conversation
from conversations.staff_handlers import StaffOutcome, TranscriptMarker
from messenger.models import InboundMessage, OutboundPart
from messenger.people import user_last_message_at
from messenger.window import Author, HumanAgent, Refused, send_policy

Status = InboundMessage.Status
MARKED = (Status.FAILED, Status.DEFERRED, Status.EXPIRED, Status.HANDED_OVER)
MARKER_LIMIT = 500  # as many as the transcript shows

# (start of status_reason, sentence), first match wins; checked after the status-wide defaults.
_REASONS: tuple[tuple[str, str], ...] = (
    (
        "recipient: recipient_unavailable",
        "The user can't receive messages from the page (blocked it, or the account is gone).",
    ),
    ("recipient:", "Facebook would not deliver the reply to this user."),
    ("Facebook: outside the messaging window", "Facebook refused the reply: the 24-hour window had closed."),
    ("Facebook refused the message", "Facebook refused the reply itself (its content or format)."),
    ("gave up after", "Sending kept failing, so the bot gave up on this reply."),
    ("gave up:", "Facebook was unavailable until the 24-hour window closed, so the reply was never sent."),
    (
        "outside the 24-hour messaging window",
        "The message came too late for the bot (over 24 hours): a person must answer.",
    ),
    ("the Send API circuit is open", "Facebook is failing right now; the reply will be retried automatically."),
    ("send failed", "Sending failed; the reply will be retried automatically."),
    ("infrastructure error", "A temporary problem on our side; the message will be retried automatically."),
    ("a human has this conversation", "Staff has this conversation, so the bot did not answer."),
    ("a human took the conversation", "Staff took the conversation before the reply went out."),
    ("a person answered from elsewhere", "A person answered from the Page Inbox, so the bot stayed quiet."),
    ("standby", "Another app (such as the Page Inbox) has the conversation, so the bot did not answer."),
    ("app ", "Another app has the conversation, so the bot did not answer."),
    ("error:", "The bot crashed on this message; developers have been alerted in the logs."),
    ("parts without a conversation", "The reply was lost because its conversation was missing."),
)
_BY_STATUS = {
    Status.FAILED: "The reply could not be sent.",
    Status.DEFERRED: "The reply is waiting to be retried.",
    Status.EXPIRED: "Too late for the bot to answer (the 24-hour window).",
    Status.HANDED_OVER: "A person has this conversation, so the bot did not answer.",
}


def reason_plain(*, status: str, reason: str) -> str:
    """A sentence for staff saying why a message ended ``status`` with developer text ``reason``."""
    for prefix, sentence in _REASONS:
        if reason.startswith(prefix):
            return sentence
    if reason.startswith("token") or "token" in reason:
        return "The page's access token is failing; the reply waits until it works again."
    return _BY_STATUS.get(status, reason or "")


def transcript_markers(*, conversation: Conversation) -> dict[str, TranscriptMarker]:
    """The markers of ``conversation``'s user messages, by their ``mid`` (the transcript row's message id)."""
    rows = list(
        InboundMessage.objects.filter(conversation_id=conversation.pk, status__in=MARKED)
        .order_by("-received_at", "-id")
        .only("id", "mid", "status", "status_reason")[:MARKER_LIMIT]
    )
    traces: dict[int, str] = {}
    parts = OutboundPart.objects.filter(inbound_id__in=[r.id for r in rows]).exclude(fbtrace_id="")
    for inbound_id, trace in parts.order_by("position").values_list("inbound_id", "fbtrace_id"):
        traces.setdefault(inbound_id, trace)
    return {
        row.mid: TranscriptMarker(
            kind=row.status,
            label=Status(row.status).label,
            reason=reason_plain(status=row.status, reason=row.status_reason),
            detail=row.status_reason,
            fbtrace_id=traces.get(row.id, ""),
            url=reverse("admin:messenger_inboundmessage_change", args=[row.id]),
        )
        for row in rows
    }


def staff_reply_preview(*, conversation: Conversation) -> StaffOutcome:
    """How a staff reply written now would go: ``ok`` False when it can't be sent at all."""
    policy = send_policy(
        last_user_message_at=user_last_message_at(page_id=conversation.page_id, psid=conversation.psid),
        now=timezone.now(),
        author=Author.STAFF,
    )
    if isinstance(policy, Refused):
        return StaffOutcome(False, f"Can't be sent: {policy.reason}")
    if isinstance(policy, HumanAgent):
        return StaffOutcome(True, "Goes with the HUMAN_AGENT tag (24 hours to 7 days since the user's last message).")
    return StaffOutcome(True, "Goes as a normal reply (within 24 hours of the user's last message).")
