"""Facebook's error codes: every Graph error fixture and the documented edge cases get the right kind."""

from __future__ import annotations

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

from messenger.graph_errors import (
    API_FAILURE_KINDS,
    PERMANENT_FOR_RECIPIENT_KINDS,
    RETRYABLE_KINDS,
    SendErrorKind,
    classify_error,
)
from tests.messenger.graph_fixtures import ERROR_FIXTURES, GRAPH_FIXTURES, graph


@pytest.mark.parametrize("name", sorted(ERROR_FIXTURES))
def test_classify_error_maps_each_graph_fixture(name):
    """Each real Graph error body becomes the right kind, code, subcode and fbtrace_id."""
    status, kind, code, subcode, trace = ERROR_FIXTURES[name]
    assert classify_error(http_status=status, body=graph(name)) == (kind, code, subcode, trace)


def test_classify_error_table_covers_every_error_fixture():
    """No Send API error fixture is left out of the classification table above."""
    on_disk = {p.stem for p in GRAPH_FIXTURES.glob("send_error_*.json")}
    assert on_disk == set(ERROR_FIXTURES)


@pytest.mark.parametrize(
    ("status", "body", "exc", "kind"),
    [
        # Refused: the connection was never made, so nothing went out.
        (None, None, requests.ConnectionError(MaxRetryError(None, "/", NewConnectionError(None, "refused"))),
         SendErrorKind.TRANSIENT),
        # Reset or timed out once the request was written: it may have been delivered.
        (None, None, requests.ConnectionError("Connection aborted: reset by peer"), SendErrorKind.IN_DOUBT),
        (None, None, requests.ReadTimeout("read timed out"), SendErrorKind.IN_DOUBT),
        (None, None, requests.ConnectTimeout("connect timed out"), SendErrorKind.TRANSIENT),
        (None, None, requests.exceptions.InvalidURL("bad url"), SendErrorKind.UNKNOWN),
        (502, None, None, SendErrorKind.TRANSIENT),
        (500, {"error": {"code": 1, "message": "An unknown error occurred"}}, None, SendErrorKind.TRANSIENT),
        (429, None, None, SendErrorKind.RATE_LIMITED),
        (400, {"error": {"code": 4, "message": "Application request limit reached"}}, None, "rate_limited"),
        (400, {"error": {"code": 17, "message": "User request limit reached"}}, None, "rate_limited"),
        (400, {"error": {"code": 10, "error_subcode": 2018108}}, None, "recipient_unavailable"),
        (400, {"error": {"code": 200, "error_subcode": 1545041}}, None, "recipient_unavailable"),
        (400, {"error": {"code": 100, "error_subcode": 2018001}}, None, SendErrorKind.NO_SUCH_USER),
        (
            400,
            {"error": {"code": 100, "message": "(#100) Param message[text] must be a UTF-8 encoded string"}},
            None,
            SendErrorKind.INVALID_REQUEST,
        ),
        (400, {"error": {"code": 10, "message": "Application does not have permission"}}, None, "permission"),
        (400, {"error": {"code": 230, "message": "Requires pages_messaging permission"}}, None, "permission"),
        (401, None, None, SendErrorKind.AUTH),
        (400, {"error": {"code": 9999, "is_transient": True}}, None, SendErrorKind.TRANSIENT),
        (400, {"error": {"code": 9999}}, None, SendErrorKind.UNKNOWN),
        (400, None, None, SendErrorKind.UNKNOWN),
    ],
)
def test_classify_error_handles_network_status_and_codes(status, body, exc, kind):
    """Network errors, bare HTTP statuses and codes outside the fixtures map as documented."""
    assert classify_error(http_status=status, body=body, exc=exc)[0] == kind


def test_classify_error_reads_fbtrace_id_outside_the_envelope():
    """A trace id Facebook put at the top level of the body is still reported."""
    body = {"error": {"code": 2, "message": "Service temporarily unavailable"}, "fbtrace_id": "TOP"}
    assert classify_error(http_status=503, body=body) == (SendErrorKind.TRANSIENT, 2, None, "TOP")


def test_classify_error_accepts_codes_sent_as_strings():
    """Codes that arrive as JSON strings are compared as numbers."""
    body = {"error": {"code": "10", "error_subcode": "2018278"}}
    assert classify_error(http_status=400, body=body) == (SendErrorKind.OUTSIDE_WINDOW, 10, 2018278, "")


def test_kind_sets_say_what_the_send_api_does_with_each_kind():
    """Only transient and rate-limited failures are retried; only page-wide failures feed the circuit."""
    assert set(RETRYABLE_KINDS) == {SendErrorKind.TRANSIENT, SendErrorKind.RATE_LIMITED}
    assert set(API_FAILURE_KINDS) == RETRYABLE_KINDS | {
        SendErrorKind.AUTH,
        SendErrorKind.PAGE_BLOCKED,
        SendErrorKind.IN_DOUBT,
    }
    assert set(PERMANENT_FOR_RECIPIENT_KINDS) == {
        SendErrorKind.RECIPIENT_UNAVAILABLE,
        SendErrorKind.OUTSIDE_WINDOW,
        SendErrorKind.NO_SUCH_USER,
    }
    assert not (PERMANENT_FOR_RECIPIENT_KINDS & API_FAILURE_KINDS)
