"""Facebook's error codes and what each means for us: the tables, and :func:`classify_error`.

The Graph client (``messenger.graph``) parses an error envelope into a ``GraphError``; this module
decides what that error *means* for a send: a :class:`SendErrorKind`, and from the kind whether the
Send API retries it, whether it counts against the circuit breaker, and whether the recipient is
unreachable. Keeping every code in one place means a change of Facebook's table is a change here.

Classified from the JSON envelope ``{"error": {"code", "error_subcode", "fbtrace_id", ...}}``, after
Facebook's "Send API Error Codes" (https://developers.facebook.com/docs/messenger-platform/reference/send-api/error-codes)
and "Common Error Codes" (https://developers.facebook.com/docs/messenger-platform/error-codes) pages:

=====================  =====================================================================  =========  =====
kind                   codes                                                                  retried    page
=====================  =====================================================================  =========  =====
in_doubt               read timeout, connection reset after sending, 1/1357046                no (echo)  yes*
transient              connect errors, HTTP 5xx, codes 1 and 1200, ``is_transient``, 2 in 5xx  yes        yes
rate_limited           codes 4, 17, 32, 613, HTTP 429                                          yes, 4x    yes
page_blocked           368 (page temporarily blocked for policy)                               no         yes
auth                   190, 102, HTTP 401/403 without a code (the page's token)               no         yes
recipient_unavailable  551 (e.g. subcode 1545041), subcode 1545041 with any code, 10/2018108  no         no
outside_window         10 with 2018278 / 2018065 / 2534022 or "outside of allowed window"     no         no
no_such_user           100 with 2018001 or "No matching user found"                            no         no
permission             other 10s, 200-299 (for this recipient or this message)                no         no
message_transient      2 answered below HTTP 500 (also "the user blocked the page")            by message no
invalid_request        other 100s                                                              no         no
unknown                anything else                                                           by message no
=====================  =====================================================================  =========  =====

"page" says whether the kind is page-wide (:data:`API_FAILURE_KINDS`: it counts toward the circuit
breaker and the message is held, in order, until the page recovers) or concerns this recipient or
message only (it never counts, and the message gives up within a bound: ``messenger.delivery``).
*A read timeout counts (a slow API is a page-wide symptom); 1/1357046 does not (Facebook answered).
An ``in_doubt`` send may have been delivered: it is never retried blindly (``messenger.delivery``
waits for its echo).

The order of the checks in :func:`classify_error` matters (a rate-limit code wins over everything,
551 over the window and auth rules): it is the table read top to bottom.
"""

from __future__ import annotations

from enum import StrEnum

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from messenger.graph import GraphError, graph_error_parse


class SendErrorKind(StrEnum):
    IN_DOUBT = "in_doubt"
    TRANSIENT = "transient"
    MESSAGE_TRANSIENT = "message_transient"
    PAGE_BLOCKED = "page_blocked"
    PERMISSION = "permission"
    RATE_LIMITED = "rate_limited"
    RECIPIENT_UNAVAILABLE = "recipient_unavailable"
    OUTSIDE_WINDOW = "outside_window"
    NO_SUCH_USER = "no_such_user"
    AUTH = "auth"
    INVALID_REQUEST = "invalid_request"
    CIRCUIT_OPEN = "circuit_open"
    TOKEN_FAILING = "token_failing"  # not sent: the page's token is marked failing (messenger.token_health)
    UNKNOWN = "unknown"


# What each kind means to the Send API.
RETRYABLE_KINDS = frozenset({SendErrorKind.TRANSIENT, SendErrorKind.RATE_LIMITED})
# Page-wide failures: the API (or our access to it) is unhealthy. They feed the circuit breaker, and
# a message that meets one is held until the page recovers.
API_FAILURE_KINDS = frozenset(
    {
        SendErrorKind.TRANSIENT,
        SendErrorKind.RATE_LIMITED,
        SendErrorKind.AUTH,
        SendErrorKind.PAGE_BLOCKED,
        SendErrorKind.IN_DOUBT,
    }
)
# Failures that retrying for this recipient cannot fix: the pipeline marks the conversation unreachable.
PERMANENT_FOR_RECIPIENT_KINDS = frozenset(
    {SendErrorKind.RECIPIENT_UNAVAILABLE, SendErrorKind.OUTSIDE_WINDOW, SendErrorKind.NO_SUCH_USER}
)
# Failures of this message alone that a later try may fix: retried by the message, within a bound.
MESSAGE_RETRY_KINDS = frozenset({SendErrorKind.MESSAGE_TRANSIENT, SendErrorKind.UNKNOWN})

# The codes, by kind (the table above).
_TRANSIENT_CODES = frozenset({1, 1200})
_SENT_DESPITE_ERROR = (1, 1357046)
_RATE_LIMIT_CODES = frozenset({4, 17, 32, 613})
_OUTSIDE_WINDOW_SUBCODES = frozenset({2018278, 2018065, 2534022})
_RECIPIENT_UNAVAILABLE_SUBCODES = frozenset({1545041, 2018108})
_NO_SUCH_USER_SUBCODES = frozenset({2018001})
_NETWORK_EXCEPTIONS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


def classify_error(
    *, http_status: int | None, body: dict | None, exc: Exception | None = None
) -> tuple[SendErrorKind, int | None, int | None, str]:
    """Map a failed Send API call to ``(kind, code, subcode, fbtrace_id)``.

    ``exc`` is the exception a request raised (no response); otherwise ``http_status`` and the
    parsed JSON ``body`` (``None`` when it was not JSON) describe the answer. Pure: no I/O, no logs.
    """
    if exc is not None:
        if not isinstance(exc, _NETWORK_EXCEPTIONS):
            return SendErrorKind.UNKNOWN, None, None, ""
        return (SendErrorKind.TRANSIENT if _surely_not_sent(exc) else SendErrorKind.IN_DOUBT), None, None, ""
    error = graph_error_parse(http_status=http_status, body=body)
    return _kind(error), error.code, error.subcode, error.fbtrace_id


def _surely_not_sent(exc: Exception) -> bool:
    """Whether a request that raised surely never reached Facebook: the connection was never made.

    A read timeout, or a connection reset or closed once the request was written, may have been
    delivered: that is *in doubt*, never *transient*.
    """
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError) and not isinstance(exc, requests.exceptions.Timeout):
        reason = getattr(exc.args[0] if exc.args else None, "reason", None)
        return isinstance(reason, NewConnectionError | ConnectTimeoutError)
    return False


def _kind(error: GraphError) -> SendErrorKind:
    code, subcode, http_status = error.code, error.subcode, error.http_status
    message = error.message.lower()
    if (code, subcode) == _SENT_DESPITE_ERROR:
        return SendErrorKind.IN_DOUBT
    if code in _RATE_LIMIT_CODES:
        return SendErrorKind.RATE_LIMITED
    if code in _TRANSIENT_CODES:
        return SendErrorKind.TRANSIENT
    if code == 2:
        # Facebook's "temporary" code also answers a user who blocked the page: page-wide only when
        # the answer is a server error.
        if http_status is not None and http_status >= 500:
            return SendErrorKind.TRANSIENT
        return SendErrorKind.MESSAGE_TRANSIENT
    if code == 368:
        return SendErrorKind.PAGE_BLOCKED
    if code == 551 or subcode in _RECIPIENT_UNAVAILABLE_SUBCODES:
        return SendErrorKind.RECIPIENT_UNAVAILABLE
    if code == 10 and (subcode in _OUTSIDE_WINDOW_SUBCODES or "outside of allowed window" in message):
        return SendErrorKind.OUTSIDE_WINDOW
    if code == 100:
        if subcode in _NO_SUCH_USER_SUBCODES or "no matching user" in message:
            return SendErrorKind.NO_SUCH_USER
        return SendErrorKind.INVALID_REQUEST
    if code in (102, 190):
        return SendErrorKind.AUTH
    if code == 10 or (code is not None and 200 <= code <= 299):
        return SendErrorKind.PERMISSION
    if code is None:
        if http_status == 429:
            return SendErrorKind.RATE_LIMITED
        if http_status is not None and http_status >= 500:
            return SendErrorKind.TRANSIENT
        if http_status in (401, 403):
            return SendErrorKind.AUTH
    if error.is_transient or (http_status is not None and http_status >= 500):
        return SendErrorKind.TRANSIENT
    return SendErrorKind.UNKNOWN
