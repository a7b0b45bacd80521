"""The Send API client: every outbound message and sender action goes through here.

Contract
--------
:func:`send_message` and :func:`send_sender_action` never raise for an API or network failure: they
return a :class:`SendResult` whose ``error_kind`` says what happened. This module classifies,
retries, trips the circuit breaker and logs; it does *not* change the database. The pipeline
(``messenger`` jobs, another module) reacts to the result: it marks the conversation unreachable
when ``permanent_for_recipient``, records ``send_failed`` for other failures, and for a
``deferred`` result keeps the outbound part pending and reschedules it (an rq scheduled job) after
``retry_after_ms``, giving up only once the reply would fall outside the 24-hour window.

Request: ``POST {MESSENGER_GRAPH_API_URL}/me/messages`` with ``{"recipient": {"id": PSID},
"messaging_type": "RESPONSE", "message": {...}}`` or ``{"recipient": {"id": PSID},
"sender_action": "typing_on"}``, through the one Graph client (``messenger.graph``): its pooled
session, the page token in an ``Authorization: Bearer`` header (never in a URL), the
``MESSENGER_SEND_TIMEOUT_MS`` timeout, and its scrubber on every exception text this module logs.
The token is never in a log line, an exception text, a ``SendResult`` or a ``repr``.

Dry run: with ``MESSENGER_PAGE_ACCESS_TOKEN`` empty nothing is sent; the body is logged as
``messenger.send.dry-run`` (recipient replaced by its hash), appended to :data:`DRY_RUN_LOG` (the real
body, for ``messenger_simulate``) and a success-shaped result with ``dry_run=True`` is returned.

Facebook's errors are classified by ``messenger.graph_errors`` (the code tables, with their sources):
:func:`classify_error` and :class:`SendErrorKind` are re-exported here for callers of the Send API.

In doubt: a read timeout, a connection reset once the request was written, and 1/1357046 may have
been delivered (the Send API has no idempotency key): they are never retried here, and come back as
``in_doubt`` for ``messenger.delivery`` to settle by the message's echo.

Retries (tenacity): a transient failure (one that surely did not go out) is retried up to
``MESSENGER_MAX_RETRIES`` times, waiting ``MESSENGER_RETRY_BASE_MS * 2**(n-1)``; a rate-limited one
waits :data:`RATE_LIMIT_WAIT_FACTOR` times longer (Facebook counts over a sliding window); every wait
is capped at :data:`MAX_WAIT_MS`. Tests patch :func:`_sleep`.

Circuit breaker (``messenger.circuit``): each HTTP attempt asks for a permit. A failed attempt of a
page-wide kind (``graph_errors.API_FAILURE_KINDS``) is one API failure and a success resets the
count; an error of one recipient or one message neither counts nor resets. When the circuit opens
during our retries we stop and return ``deferred``. A half-open probe is one attempt; any answer
other than an API failure closes the circuit. A throttled answer (4, 32, 613) whose usage headers
say when access returns opens the circuit for that long (``messenger.usage``, bounded). The
reasoning behind each rule: docs/send_api.md.

A page's token (``messenger.token_health``): a send that names its ``page_id`` asks the page's token
gate first; while the token is marked failing no call is made and the result is ``deferred`` with
``error_kind`` ``token_failing``. An ``auth`` answer marks the token (one ERROR per incident, logged
there) and comes back the same way, deferred, not failed; it does not count against the circuit.

Several pages (``messenger.pages``): a send that names its ``page_id`` is made with that page's
token (``page_token``) behind that page's own circuit (``get_breaker(page_id=...)``): Facebook
limits each page on its own, and one page's throttling must not stop the others. A send with no
page uses ``MESSENGER_PAGE_ACCESS_TOKEN`` and the ``send_api`` circuit, as before pages. A page
with no token while other pages have one is never sent for: ``invalid_request``, logged as
``messenger.send.unknown-page`` (the pipeline keeps such events as ``unknown_page`` before this).
"""

from __future__ import annotations

import copy
import json
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt

from messenger import pages, token_health
from messenger.circuit import Permit, get_breaker
from messenger.graph import GraphUnreachable, graph_request, graph_token, reset_session
from messenger.graph_errors import (
    API_FAILURE_KINDS,
    PERMANENT_FOR_RECIPIENT_KINDS,
    RETRYABLE_KINDS,
    SendErrorKind,
    classify_error,
)
from messenger.usage import GraphUsage, usage_cooldown_ms, usage_record
from messenger.window import tag_problem
from observability.hashing import hash_psid
from observability.logging import safe_extra

__all__ = [
    "DRY_RUN_LOG",
    "SENDER_ACTIONS",
    "SendErrorKind",
    "SendResult",
    "classify_error",
    "reset_session",
    "send_message",
    "send_sender_action",
]

logger = logging.getLogger("messenger.send")

RATE_LIMIT_WAIT_FACTOR = 4
MAX_WAIT_MS = 30_000
SENDER_ACTIONS = frozenset({"mark_seen", "typing_on", "typing_off"})

# The last dry-run bodies (what would have been POSTed, token excluded), newest last.
DRY_RUN_LOG: deque[dict] = deque(maxlen=100)


@dataclass(frozen=True)
class SendResult:
    """What happened to one Send API request, after retries.

    ``deferred`` is True when the circuit was (or became) open: the message was not delivered and
    the caller keeps it pending and tries again after ``retry_after_ms``; then ``error_kind`` is
    ``circuit_open`` and the code fields describe the last HTTP failure, if any.
    """

    ok: bool
    message_id: str = ""
    error_kind: SendErrorKind | None = None
    error_code: int | None = None
    error_subcode: int | None = None
    fbtrace_id: str = ""
    http_status: int | None = None
    attempts: int = 0
    dry_run: bool = False
    deferred: bool = False
    retry_after_ms: int | None = None

    @property
    def in_doubt(self) -> bool:
        """True when the message may have been delivered although no success came back."""
        return self.error_kind == SendErrorKind.IN_DOUBT

    @property
    def permanent_for_recipient(self) -> bool:
        """True when retrying for this recipient is pointless (unavailable, window closed, unknown)."""
        return self.error_kind in PERMANENT_FOR_RECIPIENT_KINDS


# --- helpers ----------------------------------------------------------------------------------
def _sleep(seconds: float) -> None:
    """The wait between retries; tests patch it so nothing sleeps for real."""
    time.sleep(seconds)


def _log_context(*, psid: str, log_context: dict | None) -> dict:
    """``extra=`` for every line of this send: the caller's context, ``mid``, ``psid_hash``."""
    context = safe_extra(log_context)
    context.setdefault("mid", "-")
    if not context.get("psid_hash"):
        context["psid_hash"] = hash_psid(psid)
    return context


def _wait_seconds(kind: SendErrorKind, retry_number: int) -> float:
    """The wait before retry ``retry_number`` (1-based) after a failure of ``kind``."""
    base_ms = max(0, int(settings.MESSENGER_RETRY_BASE_MS))
    factor = RATE_LIMIT_WAIT_FACTOR if kind == SendErrorKind.RATE_LIMITED else 1
    return min(base_ms * factor * 2 ** (retry_number - 1), MAX_WAIT_MS) / 1000


@dataclass
class _Attempt:
    """The outcome of one attempt (internal): an HTTP answer, or a refusal by the circuit."""

    ok: bool = False
    message_id: str = ""
    kind: SendErrorKind | None = None
    code: int | None = None
    subcode: int | None = None
    fbtrace_id: str = ""
    http_status: int | None = None
    refused: bool = False  # the circuit refused: no HTTP call was made
    circuit_opened: bool = False  # this failure opened (or reopened) the circuit
    was_probe: bool = False
    retry_after_ms: int = 0
    usage: GraphUsage | None = None
    error: str = field(default="", repr=False)


def _post_once(*, body: dict, token: str) -> _Attempt:
    """One HTTP call with ``token``; never raises for network errors (they come back classified)."""
    try:
        response = graph_request("POST", "/me/messages", json=body, token=token)
    except GraphUnreachable as exc:
        kind, _code, _subcode, _trace = classify_error(http_status=None, body=None, exc=exc.cause)
        return _Attempt(kind=kind, error=str(exc))  # the client's text: already scrubbed
    payload = response.payload
    if response.is_success and not response.has_error_envelope:
        message_id = payload.get("message_id", "") if isinstance(payload, dict) else ""
        return _Attempt(
            ok=True, message_id=str(message_id or ""), http_status=response.status, usage=response.usage
        )
    kind, code, subcode, trace = classify_error(http_status=response.status, body=payload)
    return _Attempt(
        kind=kind, code=code, subcode=subcode, fbtrace_id=trace, http_status=response.status, usage=response.usage
    )


def _dry_run(*, body: dict, context: dict, is_message: bool) -> SendResult:
    DRY_RUN_LOG.append(copy.deepcopy(body))
    logged = dict(body, recipient={"id": f"psid_hash:{context['psid_hash']}"})
    logger.info(
        "messenger.send.dry-run",
        extra={**context, "body": json.dumps(logged, ensure_ascii=False, sort_keys=True)},
    )
    message_id = f"dryrun-{uuid.uuid4().hex}" if is_message else ""
    return SendResult(ok=True, message_id=message_id, dry_run=True)


# --- the send loop ----------------------------------------------------------------------------
def _deliver(*, body: dict, context: dict, max_attempts: int, is_message: bool, page_id: str = "") -> SendResult:
    token = pages.page_token(page_id=page_id) if page_id else graph_token()
    if not token:
        if not page_id or pages.pages_dry_run():
            return _dry_run(body=body, context=context, is_message=is_message)
        logger.error("messenger.send.unknown-page", extra={**context, "page_id": page_id})
        return SendResult(ok=False, error_kind=SendErrorKind.INVALID_REQUEST)
    gate = token_health.token_gate(page_id=page_id)
    if not gate.allowed:
        return _token_deferred(gate=gate, failure=None, attempts=0, context=context)

    breaker = get_breaker(page_id=page_id)
    http_attempts = 0
    last_failure: _Attempt | None = None

    def attempt() -> _Attempt:
        nonlocal http_attempts, last_failure
        permit: Permit = breaker.acquire()
        if not permit.allowed:
            return _Attempt(refused=True, retry_after_ms=permit.retry_after_ms)
        http_attempts += 1
        outcome = _post_once(body=body, token=token)
        outcome.was_probe = permit.is_probe
        usage_record(page_id=page_id, usage=outcome.usage)
        if outcome.ok:
            breaker.record_success(permit)
            return outcome
        last_failure = outcome
        if (
            outcome.kind in API_FAILURE_KINDS
            and not (gate.page_id and outcome.kind == SendErrorKind.AUTH)
            and not _answered_in_doubt(outcome)
        ):
            cooldown_ms = usage_cooldown_ms(usage=outcome.usage, error_code=outcome.code)
            transition = breaker.record_failure(permit, cooldown_ms=cooldown_ms)
            outcome.circuit_opened = transition in ("opened", "reopened", "extended")
            outcome.retry_after_ms = cooldown_ms or 0
        elif permit.is_probe:
            breaker.record_success(permit)  # Facebook answered: the API itself is healthy
        _log_failed_attempt(outcome, attempt_number=http_attempts, context=context)
        return outcome

    def should_retry(outcome: _Attempt) -> bool:
        return (
            not outcome.ok
            and not outcome.refused
            and not outcome.circuit_opened
            and not outcome.was_probe
            and outcome.kind in RETRYABLE_KINDS
        )

    def wait(retry_state: RetryCallState) -> float:
        outcome: _Attempt = retry_state.outcome.result()
        return _wait_seconds(outcome.kind or SendErrorKind.TRANSIENT, retry_state.attempt_number)

    def before_sleep(retry_state: RetryCallState) -> None:
        outcome: _Attempt = retry_state.outcome.result()
        wait_ms = int(retry_state.next_action.sleep * 1000) if retry_state.next_action else 0
        logger.info(
            "messenger.send.retry",
            extra={**context, "error_kind": str(outcome.kind), "attempt": http_attempts, "wait_ms": wait_ms},
        )

    retrying = Retrying(
        stop=stop_after_attempt(max(1, max_attempts)),
        wait=wait,
        retry=retry_if_result(should_retry),
        sleep=lambda seconds: _sleep(seconds),
        before_sleep=before_sleep,
        retry_error_callback=lambda retry_state: retry_state.outcome.result(),
        reraise=True,
    )
    outcome: _Attempt = retrying(attempt)
    if token_health.token_failed(gate=gate, ok=outcome.ok, kind=outcome.kind, error_code=outcome.code):
        return _token_deferred(gate=gate, failure=outcome, attempts=http_attempts, context=context)
    return _result(outcome, last_failure=last_failure, attempts=http_attempts, context=context)


def _token_deferred(
    *, gate: token_health.TokenGate, failure: _Attempt | None, attempts: int, context: dict
) -> SendResult:
    """Deferred, not failed: the page's token is failing (``messenger.token_health`` logged it once)."""
    retry_after = gate.retry_after_ms or int(settings.MESSENGER_TOKEN_RECHECK_MS)
    return _deferred(
        SendErrorKind.TOKEN_FAILING, failure=failure, retry_after=retry_after, attempts=attempts,
        context=context, log=bool(attempts),
    )


def _deferred(
    kind: SendErrorKind, *, failure: _Attempt | None, retry_after: int, attempts: int, context: dict,
    log: bool = True,
) -> SendResult:
    """One shape for every deferral (token failing, circuit open): the last failure's figures, no error."""
    failure = failure or _Attempt()
    if log:
        logger.warning(
            "messenger.send.deferred",
            extra={
                **context,
                "attempts": attempts,
                "retry_after_ms": retry_after,
                "error_code": failure.code,
                "fbtrace_id": failure.fbtrace_id,
            },
        )
    return _failed(kind, failure, attempts=attempts, deferred=True, retry_after_ms=max(0, retry_after))


def _failed(kind: SendErrorKind, failure: _Attempt, *, attempts: int, **more: Any) -> SendResult:
    """A result that is not ok, with the figures Facebook gave for ``failure`` (code, trace id, status)."""
    return SendResult(
        ok=False, error_kind=kind, error_code=failure.code, error_subcode=failure.subcode,
        fbtrace_id=failure.fbtrace_id, http_status=failure.http_status, attempts=attempts, **more,
    )


def _failure_fields(outcome: _Attempt, kind: SendErrorKind | None) -> dict[str, Any]:
    """What a log line says about a failed call (``error`` only when there is one)."""
    return {
        "error_kind": str(kind), "error_code": outcome.code, "error_subcode": outcome.subcode,
        "fbtrace_id": outcome.fbtrace_id, "http_status": outcome.http_status,
        **({"error": outcome.error} if outcome.error else {}),
    }


def _answered_in_doubt(outcome: _Attempt) -> bool:
    """1/1357046: Facebook answered (the API is up) that it sent despite an error."""
    return outcome.kind == SendErrorKind.IN_DOUBT and outcome.http_status is not None


def _log_failed_attempt(outcome: _Attempt, *, attempt_number: int, context: dict) -> None:
    logger.warning(
        "messenger.send.attempt-failed",
        extra={
            **context, "attempt": attempt_number, "probe": outcome.was_probe, **_failure_fields(outcome, outcome.kind)
        },
    )


def _result(outcome: _Attempt, *, last_failure: _Attempt | None, attempts: int, context: dict) -> SendResult:
    if outcome.ok:
        if attempts > 1:
            logger.info("messenger.send.recovered", extra={**context, "attempts": attempts})
        return SendResult(ok=True, message_id=outcome.message_id, http_status=outcome.http_status, attempts=attempts)

    if outcome.circuit_opened and outcome.kind == SendErrorKind.IN_DOUBT:
        # The circuit opened on this very send, which may have been delivered: the caller must
        # treat it as in doubt (wait for its echo), not as never sent.
        outcome.circuit_opened = False
    if outcome.refused or outcome.circuit_opened:
        retry_after = outcome.retry_after_ms or int(settings.MESSENGER_CIRCUIT_COOLDOWN_MS)
        return _deferred(
            SendErrorKind.CIRCUIT_OPEN, failure=last_failure, retry_after=retry_after, attempts=attempts,
            context=context,
        )

    kind = outcome.kind or SendErrorKind.UNKNOWN
    level = logging.WARNING if kind in PERMANENT_FOR_RECIPIENT_KINDS else logging.ERROR
    logger.log(
        level,
        "messenger.send.failed",
        extra={**context, "attempts": attempts, **_failure_fields(outcome, kind)},
    )
    return _failed(kind, outcome, attempts=attempts)


# --- public API -------------------------------------------------------------------------------
def send_message(
    *,
    psid: str,
    message: dict,
    messaging_type: str = "RESPONSE",
    log_context: dict | None = None,
    page_id: str = "",
    metadata: str = "",
    tag: str | None = None,
    author: str = "bot",
) -> SendResult:
    """Send one message (a Send API ``message`` object) to ``psid``, with retries and the circuit.

    Never raises for an API or network failure; see the module docstring for the result contract.
    ``log_context`` should carry ``mid`` and ``psid_hash`` (computed from ``psid`` when absent);
    ``page_id``, when known, puts the send behind the page's token gate (module docstring).
    ``metadata`` (at most 1,000 characters) rides in ``message.metadata`` and comes back in the
    message's echo (``messenger.echoes``). A result that is ``in_doubt`` was not retried: the
    message may have been delivered. ``messaging_type`` and ``tag`` come from
    ``messenger.window.send_policy``; any tag but ``HUMAN_AGENT`` on a staff message
    (``author="staff"``) is refused here, without a call.
    """
    if metadata:
        message = {**message, "metadata": metadata[:1000]}
    context = _log_context(psid=psid, log_context=log_context)
    problem = tag_problem(messaging_type=messaging_type, tag=tag, author=author)
    if problem:
        logger.error("messenger.send.tag-refused", extra={**context, "problem": problem})
        return SendResult(ok=False, error_kind=SendErrorKind.INVALID_REQUEST)
    body = {"recipient": {"id": psid}, "messaging_type": messaging_type, "message": message}
    if tag:
        body["tag"] = tag
    max_attempts = 1 + max(0, int(settings.MESSENGER_MAX_RETRIES))
    return _deliver(body=body, context=context, max_attempts=max_attempts, is_message=True, page_id=page_id)


def send_sender_action(*, psid: str, action: str, log_context: dict | None = None, page_id: str = "") -> SendResult:
    """Best effort ``mark_seen`` / ``typing_on`` / ``typing_off``: one attempt, no retries, never raises.

    While the circuit is open it is skipped (a deferred result, no HTTP call); callers usually just
    move on, since a typing indicator is worthless later.
    """
    context = _log_context(psid=psid, log_context=log_context)
    if action not in SENDER_ACTIONS:
        logger.error("messenger.send.invalid-sender-action", extra={**context, "action": str(action)[:32]})
        return SendResult(ok=False, error_kind=SendErrorKind.INVALID_REQUEST)
    body = {"recipient": {"id": psid}, "sender_action": action}
    try:
        return _deliver(
            body=body, context={**context, "action": action}, max_attempts=1, is_message=False, page_id=page_id
        )
    except Exception:
        # Best effort by contract: a bug here must never cost the user their reply.
        logger.exception("messenger.send.sender-action-crashed", extra={**context, "action": action})
        return SendResult(ok=False, error_kind=SendErrorKind.UNKNOWN)
