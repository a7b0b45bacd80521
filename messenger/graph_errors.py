"""Facebook's error codes and what each means for us: the tables, and :func:`classify_error`.

The Graph client (``messenger.graph``) parses an error envelope into a ``GraphError``; this module
decides what that error *means* for a send: a :class:`SendErrorKind`, and from the kind whether the
Send API retries it, whether it counts against the circuit breaker, and whether the recipient is
unreachable. Keeping every code in one place means a change of Facebook's table is a change here.

Classified from the JSON envelope ``{"error": {"code", "error_subcode", "fbtrace_id", ...}}``, after
Facebook's "Send API Error Codes" (https://developers.facebook.com/docs/messenger-platform/reference/send-api/error-codes)
and "Common Error Codes" (https://developers.facebook.com/docs/messenger-platform/error-codes) pages:

=====================  =====================================================================  =========
kind                   codes                                                                  retried
=====================  =====================================================================  =========
transient              network errors, timeouts, HTTP 5xx, codes 1, 2, 1200, ``is_transient``  yes
rate_limited           codes 4, 17, 32, 613, HTTP 429                                          yes, 4x wait
recipient_unavailable  551 (e.g. subcode 1545041), subcode 1545041 with any code, 10/2018108  no
outside_window         10 with 2018278 / 2018065 or "outside of allowed window"                no
no_such_user           100 with 2018001 or "No matching user found"                            no
auth                   190, 102, other 10s, 200-299 (permissions)                              no
invalid_request        other 100s                                                              no
unknown                anything else                                                           no
=====================  =====================================================================  =========

The order of the checks in :func:`classify_error` matters (a rate-limit code wins over everything,
551 over the window and auth rules): it is the table read top to bottom.
"""

from __future__ import annotations

from enum import StrEnum

import requests

from messenger.graph import GraphError, graph_error_parse


class SendErrorKind(StrEnum):
    TRANSIENT = "transient"
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
# Failures that say the API (or our access to it) is unhealthy: they feed the circuit breaker.
API_FAILURE_KINDS = frozenset({SendErrorKind.TRANSIENT, SendErrorKind.RATE_LIMITED, SendErrorKind.AUTH})
# Failures that retrying for this recipient cannot fix: the pipeline marks the conversation unreachable.
PERMANENT_FOR_RECIPIENT_KINDS = frozenset(
    {SendErrorKind.RECIPIENT_UNAVAILABLE, SendErrorKind.OUTSIDE_WINDOW, SendErrorKind.NO_SUCH_USER}
)

# The codes, by kind (the table above).
_TRANSIENT_CODES = frozenset({1, 2, 1200})
_RATE_LIMIT_CODES = frozenset({4, 17, 32, 613})
_OUTSIDE_WINDOW_SUBCODES = frozenset({2018278, 2018065})
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
        kind = SendErrorKind.TRANSIENT if isinstance(exc, _NETWORK_EXCEPTIONS) else SendErrorKind.UNKNOWN
        return kind, None, None, ""
    error = graph_error_parse(http_status=http_status, body=body)
    return _kind(error), error.code, error.subcode, error.fbtrace_id


def _kind(error: GraphError) -> SendErrorKind:
    code, subcode, http_status = error.code, error.subcode, error.http_status
    message = error.message.lower()
    if code in _RATE_LIMIT_CODES:
        return SendErrorKind.RATE_LIMITED
    if code in _TRANSIENT_CODES:
        return SendErrorKind.TRANSIENT
    if code == 551 or subcode in _RECIPIENT_UNAVAILABLE_SUBCODES:
        return SendErrorKind.RECIPIENT_UNAVAILABLE
    if code == 10 and (subcode in _OUTSIDE_WINDOW_SUBCODES or "outside of allowed window" in message):
        return SendErrorKind.OUTSIDE_WINDOW
    if code == 100:
        if subcode in _NO_SUCH_USER_SUBCODES or "no matching user" in message:
            return SendErrorKind.NO_SUCH_USER
        return SendErrorKind.INVALID_REQUEST
    if code in (10, 102, 190) or (code is not None and 200 <= code <= 299):
        return SendErrorKind.AUTH
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
