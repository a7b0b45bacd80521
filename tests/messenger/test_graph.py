"""The one Graph client: pooled session, Bearer header, timeout, scrubbing, the error envelope, its callers."""

from __future__ import annotations

import os

import pytest
import requests
from django.test import override_settings

from messenger import graph
from messenger.graph import (
    REDACTED,
    GraphError,
    GraphUnreachable,
    get_session,
    graph_error_parse,
    graph_request,
    graph_url,
    reset_session,
    scrub,
)
from messenger.profile import profile_delete, profile_set, profile_show
from messenger.send_api import send_message, send_sender_action
from tests.messenger.graph_fixtures import graph as fixture

TOKEN = "EAAGtestPAGEtoken0123456789abcdef"
GRAPH = "https://graph.test.invalid/v25.0"
SEND_URL = f"{GRAPH}/me/messages"
PROFILE_URL = f"{GRAPH}/me/messenger_profile"
PSID = "1254477777772919"
BODY = {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": {"text": "Hello there"}}


def _oauth_error(code: int, subcode: int, message: str, fbtrace_id: str) -> GraphError:
    """Facebook's error for a refused token or recipient: an ``OAuthException`` answered with HTTP 400."""
    return GraphError(
        http_status=400, code=code, subcode=subcode, message=message, type="OAuthException", fbtrace_id=fbtrace_id
    )


@pytest.fixture(autouse=True)
def graph_settings(fresh_graph_client):
    """A configured page token and Graph URL; a fresh session (and circuit) around each test."""
    with override_settings(
        MESSENGER_PAGE_ACCESS_TOKEN=TOKEN, MESSENGER_GRAPH_API_URL=GRAPH, MESSENGER_SEND_TIMEOUT_MS=5000
    ):
        yield


# --- the session ------------------------------------------------------------------------------


def test_graph_request_uses_one_pooled_session_until_reset(graph_api):
    """Calls share one requests.Session per process; reset_session() drops it."""
    graph_api.post(SEND_URL, json=fixture("send_success"))
    graph_api.post(SEND_URL, json=fixture("send_success"))
    graph_request("POST", "/me/messages", json=BODY)
    first = get_session()
    graph_request("POST", "/me/messages", json=BODY)
    assert get_session() is first
    reset_session()
    assert get_session() is not first


def test_session_never_retries_behind_the_callers_back():
    """urllib3 makes one try per call: retries are the Send API's, behind its circuit breaker."""
    session = get_session()
    for prefix in ("https://", "http://"):
        assert session.get_adapter(prefix).max_retries.total == 0


def test_forked_child_builds_its_own_session():
    """After a fork the child drops (without closing) its parent's session and builds a new one."""
    parent_session = get_session()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it got a session of its own, then leave at once
        try:
            own = get_session() is not parent_session and graph._session_pid == os.getpid()
            os.write(write_end, b"1" if own else b"0")
        finally:
            os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 1)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert get_session() is parent_session  # the parent keeps its own


# --- the request ------------------------------------------------------------------------------


def test_graph_request_sends_bearer_header_never_token_in_url(graph_api):
    """The token goes in the Authorization header only; query parameters are the caller's alone."""
    graph_api.get(PROFILE_URL, json={"data": []})
    graph_request("GET", "/me/messenger_profile", params={"fields": "greeting"})
    request = graph_api.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.url == f"{PROFILE_URL}?fields=greeting"
    assert TOKEN not in request.url


def test_graph_request_keeps_its_own_authorization_header(graph_api):
    """A caller's headers are sent, but never a second or different Authorization."""
    graph_api.post(SEND_URL, json=fixture("send_success"))
    headers = {"Content-Type": "application/json", "authorization": "Bearer someone-else"}
    graph_request("POST", "/me/messages", data=b"{}", headers=headers)
    headers = graph_api.calls[0].request.headers
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Content-Type"] == "application/json"


def test_graph_request_timeout_follows_setting_at_call_time(graph_api):
    """Each HTTP call uses MESSENGER_SEND_TIMEOUT_MS, read when the call is made."""
    graph_api.post(SEND_URL, json=fixture("send_success"))
    graph_api.post(SEND_URL, json=fixture("send_success"))
    graph_request("POST", "/me/messages", json=BODY)
    with override_settings(MESSENGER_SEND_TIMEOUT_MS=1234):
        graph_request("POST", "/me/messages", json=BODY)
    assert graph_api.calls[0].request.req_kwargs["timeout"] == 5.0
    assert graph_api.calls[1].request.req_kwargs["timeout"] == 1.234


def test_graph_request_without_token_sends_nothing(graph_api):
    """Without a page token the client refuses: a request without credentials is always a bug."""
    with override_settings(MESSENGER_PAGE_ACCESS_TOKEN=""), pytest.raises(ValueError, match="graph_token"):
        graph_request("POST", "/me/messages", json=BODY)
    assert len(graph_api.calls) == 0


def test_graph_url_joins_base_and_path():
    """One slash between the configured version URL and the path, whatever either carries."""
    with override_settings(MESSENGER_GRAPH_API_URL=f"{GRAPH}/"):
        assert graph_url("/me/messages") == SEND_URL
        assert graph_url("me/messenger_profile") == PROFILE_URL


def test_graph_request_returns_error_answers_with_their_envelope(graph_api):
    """An error answer is returned, not raised; its envelope is parsed."""
    graph_api.post(SEND_URL, json=fixture("send_error_invalid_token"), status=400)
    response = graph_request("POST", "/me/messages", json=BODY)
    assert (response.status, response.is_success, response.is_json, response.has_error_envelope) == (
        400,
        False,
        True,
        True,
    )
    assert response.error == _oauth_error(190, 1234567, "Invalid OAuth access token.", "BLBz/WZt8dN")


def test_graph_request_non_json_answer_has_no_payload(graph_api):
    """An HTML error page (a proxy's 502) is an answer without JSON."""
    graph_api.post(SEND_URL, body="<html>Bad gateway</html>", status=502)
    response = graph_request("POST", "/me/messages", json=BODY)
    assert (response.status, response.reason, response.payload, response.is_json) == (502, "Bad Gateway", None, False)
    assert response.error == GraphError(http_status=502)


def test_graph_request_without_answer_raises_scrubbed_graph_unreachable(graph_api):
    """A network error becomes GraphUnreachable: its text names the error but never the token."""
    leaky = requests.ConnectionError(f"Max retries exceeded with url: /v25.0/me/messages?access_token={TOKEN}")
    graph_api.post(SEND_URL, body=leaky)
    with pytest.raises(GraphUnreachable) as excinfo:
        graph_request("POST", "/me/messages", json=BODY)
    error = excinfo.value
    assert error.cause is leaky and error.exc_name == "ConnectionError"
    assert str(error).startswith("ConnectionError: Max retries exceeded")
    assert TOKEN not in str(error) and TOKEN not in repr(error)
    assert f"access_token={REDACTED}" in str(error)


# --- scrubbing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"token {TOKEN} here", "token [redacted] here"),
        ("url?access_token=EAAother123&x=1", "url?access_token=[redacted]&x=1"),
        ("Authorization: Bearer EAAother.abc-123|x", "Authorization: Bearer [redacted]"),
        ("'ACCESS_TOKEN=EAAother' x", "'ACCESS_TOKEN=[redacted]' x"),
        ("nothing secret", "nothing secret"),
    ],
)
def test_scrub_redacts_the_token_and_anything_shaped_like_one(text, expected):
    """The configured token, access_token= values and Bearer credentials are all redacted."""
    assert scrub(text) == expected


def test_scrub_uses_the_callers_mask():
    """Callers whose messages promise another mask (the profile command's ``***``) keep it."""
    assert scrub(f"Bad token {TOKEN}", mask="***") == "Bad token ***"
    assert scrub("bearer EAAother", mask="***") == "bearer ***"


def test_scrub_without_configured_token_still_redacts_shapes():
    """Dry-run processes have no token, but a token-shaped text is still redacted."""
    with override_settings(MESSENGER_PAGE_ACCESS_TOKEN=""):
        assert scrub("?access_token=EAAx") == "?access_token=[redacted]"


# --- the error envelope -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            fixture("send_error_user_unavailable"),
            _oauth_error(551, 1545041, "(#551) This person isn't available right now.", "G3GRmtpZiq6"),
        ),
        ({"error": {"code": "100", "error_subcode": "2018001"}}, GraphError(400, code=100, subcode=2018001)),
        ({"error": {"code": 2, "is_transient": True}, "fbtrace_id": "T"}, GraphError(400, 2, None, "", "", "T", True)),
        ({"error": {"code": "abc", "is_transient": "yes"}}, GraphError(http_status=400)),
        ({"error": "oops"}, GraphError(http_status=400)),
        (["error"], GraphError(http_status=400)),
        (None, GraphError(http_status=400)),
    ],
)
def test_graph_error_parse_reads_any_shape(body, expected):
    """Every envelope field is read, codes as ints, and a malformed body gives empty fields."""
    assert graph_error_parse(http_status=400, body=body) == expected


# --- every caller goes through the client -----------------------------------------------------


def test_send_api_and_profile_share_one_session_header_and_timeout(graph_api, sessions_used):
    """Messages, sender actions and the three profile calls: one session, Bearer, no token in URLs."""
    graph_api.post(SEND_URL, json=fixture("send_success"))
    graph_api.post(SEND_URL, json=fixture("send_success_sender_action"))
    graph_api.post(PROFILE_URL, json=fixture("messenger_profile_success"))
    graph_api.get(PROFILE_URL, json={"data": []})
    graph_api.delete(PROFILE_URL, json=fixture("messenger_profile_success"))

    assert send_message(psid=PSID, message={"text": "Hi"}).ok
    assert send_sender_action(psid=PSID, action="typing_on").ok
    profile_set(profile={"get_started": {"payload": "GET_STARTED"}})
    profile_show(fields=["greeting"])
    profile_delete(fields=["greeting"])

    assert len(graph_api.calls) == 5
    assert len(sessions_used) == 5 and all(session is get_session() for session in sessions_used)
    for call in graph_api.calls:
        assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert "access_token" not in call.request.url and TOKEN not in call.request.url
        assert call.request.req_kwargs["timeout"] == 5.0

