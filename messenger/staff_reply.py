"""Staff replies from the admin: checked against the window rule, queued, sent like the bot's replies.

The admin (``conversations.admin``, through ``conversations.staff_handlers``) calls
:func:`staff_reply_queue`. It asks ``messenger.window.send_policy`` with the time of the user's last
message: refused (beyond 7 days, or the user never wrote) means nothing is stored or queued and the
reason goes back to the admin; otherwise a :class:`~messenger.models.StaffReply` row is written and
its rq job (:func:`messenger.jobs.send_staff_reply`) queued once the admin's transaction commits.

The job (:func:`staff_reply_send`) applies the rule again (a send may have waited out an open
circuit), sends through the Send API client (retries, circuit breaker, the page's token gate) as
``RESPONSE`` or ``MESSAGE_TAG``/``HUMAN_AGENT``, and on success records the text in the transcript
as written by that staff member and clears the conversation's "waiting for a person". A deferred or
transient failure schedules the job again; any other failure ends the row as ``failed`` with why.
The give-back handler (:func:`staff_give_back`) also lives here: it is the admin's other action.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from conversations.models import Conversation, Message
from conversations.people import conversation_clear_waiting
from conversations.services import ConversationClosedError, message_append
from conversations.staff_handlers import StaffOutcome
from messenger import handover, send_api
from messenger.models import StaffReply
from messenger.people import user_last_message_at
from messenger.queues import get_queue
from messenger.send_api import SendErrorKind
from messenger.window import Author, HumanAgent, Refused, send_policy
from observability.hashing import hash_psid

logger = logging.getLogger("messenger.staff")

Status = StaffReply.Status
JOB_FUNCTION = "messenger.jobs.send_staff_reply"
# A send that failed for a reason that is not this reply's (circuit, token, Facebook down) waits this
# long before its next try, at most this many tries (the window rule stops it sooner in any case).
RETRY_DELAY_MS = 30_000
MAX_ATTEMPTS = 20
_RETRY_KINDS = (SendErrorKind.TRANSIENT, SendErrorKind.RATE_LIMITED, SendErrorKind.AUTH, SendErrorKind.UNKNOWN)


def _job_id(reply_id: int) -> str:
    return f"staff-reply-{reply_id}"


def _enqueue(reply_id: int, delay_ms: int = 0) -> None:
    queue = get_queue(settings.MESSENGER_FAST_QUEUE)
    kwargs = {"job_id": _job_id(reply_id), "result_ttl": 3600}
    if delay_ms:
        queue.enqueue_in(timedelta(milliseconds=delay_ms), JOB_FUNCTION, reply_id, **kwargs)
    else:
        queue.enqueue(JOB_FUNCTION, reply_id, **kwargs)


def _enqueue_after_commit(reply_id: int) -> None:
    try:
        _enqueue(reply_id)
    except Exception as exc:  # noqa: BLE001 - Redis down: the row says so; staff can write again
        logger.error("messenger.staff.enqueue-failed", extra={"staff_reply_id": reply_id, "error": type(exc).__name__})
        StaffReply.objects.filter(pk=reply_id).update(status=Status.FAILED, status_reason="the queue is unavailable")


def staff_reply_queue(*, conversation: Conversation, text: str, author: str) -> StaffOutcome:
    """Queue ``text`` for the user of ``conversation`` as ``author``'s message, or refuse it and say why."""
    now = timezone.now()
    policy = send_policy(
        last_user_message_at=user_last_message_at(page_id=conversation.page_id, psid=conversation.psid),
        now=now,
        author=Author.STAFF,
    )
    context = {"conversation_id": conversation.pk, "psid_hash": hash_psid(conversation.psid)}
    if isinstance(policy, Refused):
        logger.info("messenger.staff.refused", extra={**context, "reason": policy.reason})
        return StaffOutcome(False, policy.reason)
    reply = StaffReply.objects.create(
        conversation=conversation,
        page_id=conversation.page_id,
        psid=conversation.psid,
        text=text,
        author=author,
        messaging_type=policy.messaging_type,
        tag=policy.tag or "",
    )
    transaction.on_commit(partial(_enqueue_after_commit, reply.pk), robust=True)
    logger.info("messenger.staff.queued", extra={**context, "staff_reply_id": reply.pk, "tag": reply.tag})
    how = "with the HUMAN_AGENT tag (24 hours to 7 days)" if isinstance(policy, HumanAgent) else "as a reply"
    return StaffOutcome(True, f"Staff reply queued: it goes to the user {how} in a moment.")


def _finish(reply: StaffReply, status: str, reason: str = "", **fields) -> str:
    StaffReply.objects.filter(pk=reply.pk).update(status=status, status_reason=reason[:255], **fields)
    level = logging.INFO if status in (Status.SENT, Status.DEFERRED) else logging.WARNING
    logger.log(level, f"messenger.staff.{status}", extra={"staff_reply_id": reply.pk, "reason": reason})
    return status


def staff_reply_send(*, staff_reply_id: int) -> str:
    """Send one queued staff reply (the job's work); returns its status. A sent or failed one is left."""
    reply = StaffReply.objects.select_related("conversation").filter(pk=staff_reply_id).first()
    if reply is None:
        return "missing"
    if reply.status in (Status.SENT, Status.FAILED):
        return reply.status
    policy = send_policy(
        last_user_message_at=user_last_message_at(page_id=reply.page_id, psid=reply.psid),
        now=timezone.now(),
        author=Author.STAFF,
    )
    if isinstance(policy, Refused):
        return _finish(reply, Status.FAILED, policy.reason)
    StaffReply.objects.filter(pk=reply.pk).update(attempts=reply.attempts + 1)
    result = send_api.send_message(
        psid=reply.psid,
        message={"text": reply.text},
        messaging_type=policy.messaging_type,
        tag=policy.tag,
        author=Author.STAFF,
        page_id=reply.page_id,
        log_context={"mid": _job_id(reply.pk), "psid_hash": hash_psid(reply.psid)},
    )
    if result.ok:
        message_append(
            conversation=reply.conversation,
            direction=Message.Direction.OUT,
            text=reply.text,
            fb_message_id=result.message_id or None,
            role=Message.Role.STAFF,
            author=reply.author,
        )
        conversation_clear_waiting(conversation=reply.conversation)
        return _finish(
            reply,
            Status.SENT,
            messaging_type=policy.messaging_type,
            tag=policy.tag or "",
            fb_message_id=result.message_id,
            sent_at=timezone.now(),
        )
    kind = result.error_kind or SendErrorKind.UNKNOWN
    if (result.deferred or kind in _RETRY_KINDS) and reply.attempts + 1 < MAX_ATTEMPTS:
        delay = result.retry_after_ms or RETRY_DELAY_MS
        _enqueue(reply.pk, delay_ms=max(delay, 1000))
        return _finish(reply, Status.DEFERRED, f"retrying in {delay} ms: {kind.value}")
    return _finish(reply, Status.FAILED, f"{kind.value} (code {result.error_code})")


def staff_give_back(*, conversation: Conversation, author: str) -> StaffOutcome:
    """Give the conversation back to the bot, taking thread control back from another app first."""
    if conversation.status == Conversation.Status.EXPIRED:
        raise ConversationClosedError(f"conversation {conversation.pk} is expired")
    return handover.thread_take_back(conversation=conversation, author=author)
