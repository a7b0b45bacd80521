"""The Send API client: request shape, Facebook's errors, retries and waits, the circuit, secrets, dry run."""

from __future__ import annotations

import json
import logging

import pytest
import redis
import requests
import responses
from django.test import override_settings
from redis.backoff import NoBackoff
from redis.retry import Retry
from responses import matchers

from messenger import circuit, send_api
from messenger.circuit import get_breaker
from messenger.send_api import (
    DRY_RUN_LOG,
    SendErrorKind,
    SendResult,
    send_message,
    send_sender_action,
)
from observability.hashing import hash_psid
from observability.logging import JsonFormatter, TextFormatter
from tests.messenger.graph_fixtures import ERROR_FIXTURES, graph
from tests.messenger.helpers import send_api_settings

TOKEN = "EAAGtestPAGEtoken0123456789abcdef"
GRAPH = "https://graph.test.invalid/v25.0"
SEND_URL = f"{GRAPH}/me/messages"
PSID = "1254477777772919"
MESSAGE = {"text": "Hello there"}


@pytest.fixture(autouse=True)
def send_settings(fresh_graph_client):
    """A configured page token and the contract's retry/circuit defaults; a fresh session and circuit."""
    with send_api_settings(token=TOKEN, graph_url=GRAPH, MESSENGER_SEND_TIMEOUT_MS=5000, MESSENGER_RETRY_BASE_MS=1000):
        yield


@pytest.fixture
def waits(monkeypatch):
    """The retry waits, in seconds, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(send_api, "_sleep", recorded.append)
    return recorded


@pytest.fixture
def graph_api():
    """The Graph API, answered by ``responses``; every registered answer need not be used."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def answer(mock, name: str, status: int | None = None, times: int = 1) -> None:
    """Queue ``times`` answers of the Graph fixture ``name`` (status from ERROR_FIXTURES or 200)."""
    if status is None:
        status = ERROR_FIXTURES[name][0] if name in ERROR_FIXTURES else 200
    for _ in range(times):
        mock.post(SEND_URL, json=graph(name), status=status)


def open_circuit() -> None:
    breaker = get_breaker()
    for _ in range(5):
        breaker.record_failure(breaker.acquire())
    assert breaker.state() == "open"


# --- the request ------------------------------------------------------------------------------


def test_send_message_posts_exact_body_with_bearer_token(graph_api):
    """The Send API gets exactly recipient/messaging_type/message, the token only in the header."""
    answer(graph_api, "send_success")
    message = {"text": "Hi", "quick_replies": [{"content_type": "text", "title": "Yes", "payload": "YES"}]}

    result = send_message(psid=PSID, message=message, log_context={"mid": "m_1"})

    request = graph_api.calls[0].request
    assert json.loads(request.body) == {
        "recipient": {"id": PSID},
        "messaging_type": "RESPONSE",
        "message": message,
    }
    assert request.url == SEND_URL  # no query string: the token is never in a URL
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert result == SendResult(
        ok=True, message_id=graph("send_success")["message_id"], http_status=200, attempts=1
    )


def test_send_message_passes_messaging_type(graph_api):
    """A caller's untagged messaging_type (e.g. UPDATE) is sent as given."""
    graph_api.post(
        SEND_URL,
        json=graph("send_success"),
        match=[
            matchers.json_params_matcher(
                {"recipient": {"id": PSID}, "messaging_type": "UPDATE", "message": MESSAGE}
            )
        ],
    )
    assert send_message(psid=PSID, message=MESSAGE, messaging_type="UPDATE").ok


def test_send_message_human_agent_by_staff_posts_the_tag(graph_api):
    """A staff message with HUMAN_AGENT goes as MESSAGE_TAG with exactly that tag."""
    answer(graph_api, "send_success")
    result = send_message(psid=PSID, message=MESSAGE, messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT", author="staff")
    assert result.ok
    assert json.loads(graph_api.calls[0].request.body) == {
        "recipient": {"id": PSID},
        "messaging_type": "MESSAGE_TAG",
        "tag": "HUMAN_AGENT",
        "message": MESSAGE,
    }


@pytest.mark.parametrize(
    ("tag", "author"),
    [("HUMAN_AGENT", "bot"), ("ACCOUNT_UPDATE", "staff"), ("POST_PURCHASE_UPDATE", "staff"), (None, "staff")],
)
def test_send_message_refuses_other_tags_and_any_tag_on_a_bot_message(graph_api, caplog, tag, author):
    """No HTTP call for a retired tag, a missing one, or a tag on a bot message: an invalid request."""
    result = send_message(psid=PSID, message=MESSAGE, messaging_type="MESSAGE_TAG", tag=tag, author=author)
    assert result == SendResult(ok=False, error_kind=SendErrorKind.INVALID_REQUEST)
    assert len(graph_api.calls) == 0
    assert [r.getMessage() for r in caplog.records if r.name == "messenger.send"] == ["messenger.send.tag-refused"]


def test_send_timeout_is_in_doubt_and_not_retried(graph_api, waits):
    """A read timeout may have been delivered (no idempotency key): never retried, returned in doubt."""
    graph_api.post(SEND_URL, body=requests.ReadTimeout("Read timed out. (read timeout=5.0)"))
    answer(graph_api, "send_success")
    result = send_message(psid=PSID, message=MESSAGE)
    assert not result.ok and result.in_doubt and result.attempts == 1
    assert len(graph_api.calls) == 1
    assert waits == []


# --- retries ----------------------------------------------------------------------------------


def test_send_retries_on_transient_error(graph_api, waits):
    """Two transient failures (code 1200, then HTTP 503) are retried; the third try delivers."""
    answer(graph_api, "send_error_temporary")
    answer(graph_api, "send_error_service_unavailable")
    answer(graph_api, "send_success")

    result = send_message(psid=PSID, message=MESSAGE)

    assert result.ok
    assert result.attempts == 3
    assert len(graph_api.calls) == 3
    assert waits == [1.0, 2.0]


def test_send_stops_after_3_retries(graph_api, waits):
    """A transient failure that persists is tried 1 + 3 times, waiting 1 s, 2 s, 4 s, then reported."""
    answer(graph_api, "send_error_temporary", times=5)

    result = send_message(psid=PSID, message=MESSAGE)

    assert len(graph_api.calls) == 4
    assert waits == [1.0, 2.0, 4.0]
    assert not result.ok and not result.deferred
    assert result.error_kind == SendErrorKind.TRANSIENT
    assert (result.error_code, result.error_subcode, result.fbtrace_id) == (1200, 2018024, "FTsr5khdiKl")
    assert result.attempts == 4


def test_send_retry_count_and_base_follow_settings(graph_api, waits):
    """MESSENGER_MAX_RETRIES and MESSENGER_RETRY_BASE_MS are read at call time."""
    answer(graph_api, "send_error_temporary", times=3)
    with override_settings(MESSENGER_MAX_RETRIES=2, MESSENGER_RETRY_BASE_MS=250):
        result = send_message(psid=PSID, message=MESSAGE)
    assert result.attempts == 3
    assert waits == [0.25, 0.5]


@pytest.mark.parametrize("name", ["send_error_rate_limit", "send_error_page_rate_limit"])
def test_send_rate_limit_retried_with_longer_wait(graph_api, waits, name):
    """Rate-limit errors (613, 32) are retried with waits four times longer: 4 s, 8 s, 16 s."""
    answer(graph_api, name, times=4)

    result = send_message(psid=PSID, message=MESSAGE)

    assert waits == [4.0, 8.0, 16.0]
    assert len(graph_api.calls) == 4
    assert result.error_kind == SendErrorKind.RATE_LIMITED


def test_send_rate_limit_then_success_waits_once(graph_api, waits):
    """One rate-limit answer then a success costs a single 4 s wait."""
    answer(graph_api, "send_error_rate_limit")
    answer(graph_api, "send_success")
    result = send_message(psid=PSID, message=MESSAGE)
    assert result.ok and result.attempts == 2
    assert waits == [4.0]


def test_send_waits_are_capped(graph_api, waits):
    """No single wait exceeds 30 s, whatever the base."""
    answer(graph_api, "send_error_rate_limit", times=4)
    with override_settings(MESSENGER_RETRY_BASE_MS=5000):
        send_message(psid=PSID, message=MESSAGE)
    assert waits == [20.0, 30.0, 30.0]


@pytest.mark.parametrize(
    ("name", "kind", "permanent"),
    [
        ("send_error_user_unavailable", SendErrorKind.RECIPIENT_UNAVAILABLE, True),
        ("send_error_outside_window", SendErrorKind.OUTSIDE_WINDOW, True),
        ("send_error_outside_window_legacy_2018065", SendErrorKind.OUTSIDE_WINDOW, True),
        ("send_error_no_matching_user", SendErrorKind.NO_SUCH_USER, True),
        ("send_error_invalid_token", SendErrorKind.AUTH, False),
        ("send_error_token_expired", SendErrorKind.AUTH, False),
    ],
)
def test_send_permanent_errors_not_retried(graph_api, waits, name, kind, permanent):
    """User-unavailable, outside-window, no-such-user and token errors get one try and no wait."""
    answer(graph_api, name, times=2)

    result = send_message(psid=PSID, message=MESSAGE)

    assert len(graph_api.calls) == 1
    assert waits == []
    assert not result.ok and not result.deferred
    assert result.error_kind == kind
    assert result.permanent_for_recipient is permanent
    assert result.http_status == 400
    assert result.attempts == 1


def test_send_invalid_request_not_retried(graph_api, waits):
    """A malformed message (other code 100) is reported at once as invalid_request."""
    graph_api.post(
        SEND_URL,
        status=400,
        json={
            "error": {
                "message": "(#100) Invalid parameter",
                "code": 100,
                "type": "OAuthException",
                "fbtrace_id": "X1",
            }
        },
    )
    result = send_message(psid=PSID, message=MESSAGE)
    assert result.error_kind == SendErrorKind.INVALID_REQUEST
    assert len(graph_api.calls) == 1 and waits == []


# --- the circuit ------------------------------------------------------------------------------


def test_circuit_open_returns_cached_fallback(graph_api, clock):
    """With the circuit open, send_message returns a deferred result at once and makes no HTTP call."""
    open_circuit()

    result = send_message(psid=PSID, message=MESSAGE)

    assert len(graph_api.calls) == 0
    assert result == SendResult(
        ok=False, error_kind=SendErrorKind.CIRCUIT_OPEN, deferred=True, retry_after_ms=30_000, attempts=0
    )
    assert not result.permanent_for_recipient


def test_send_stops_retrying_when_circuit_opens_mid_retry(graph_api, waits, clock):
    """Failures of our own retries open the circuit: no further attempt, a deferred result."""
    answer(graph_api, "send_error_temporary", times=5)
    with override_settings(MESSENGER_CIRCUIT_FAILURE_THRESHOLD=2):
        result = send_message(psid=PSID, message=MESSAGE)

    assert len(graph_api.calls) == 2
    assert waits == [1.0]
    assert result.deferred and result.error_kind == SendErrorKind.CIRCUIT_OPEN
    assert result.retry_after_ms == 30_000
    assert (result.error_code, result.attempts) == (1200, 2)
    assert get_breaker().state() == "open"


def test_send_stops_retrying_when_another_process_opens_circuit(graph_api, monkeypatch, clock):
    """If the circuit opens elsewhere while we wait, the next attempt is not made."""
    answer(graph_api, "send_error_temporary", times=3)
    monkeypatch.setattr(send_api, "_sleep", lambda seconds: open_circuit())

    result = send_message(psid=PSID, message=MESSAGE)

    assert len(graph_api.calls) == 1
    assert result.deferred and result.attempts == 1
    assert result.error_code == 1200  # the last HTTP failure is kept for the record


def test_send_deferred_message_delivered_once_circuit_closes(graph_api, clock):
    """A message deferred by an open circuit goes out as the probe after the cooldown and closes it."""
    open_circuit()
    deferred = send_message(psid=PSID, message=MESSAGE)
    assert deferred.deferred and len(graph_api.calls) == 0

    clock.advance(deferred.retry_after_ms)
    answer(graph_api, "send_success")
    retried = send_message(psid=PSID, message=MESSAGE)

    assert retried.ok and retried.attempts == 1
    assert len(graph_api.calls) == 1
    assert get_breaker().state() == "closed"


def test_send_failed_probe_reopens_without_retrying(graph_api, waits, clock):
    """The half-open probe is one attempt: its transient failure reopens the circuit, no retry."""
    open_circuit()
    clock.advance(30_000)
    answer(graph_api, "send_error_service_unavailable", times=3)

    result = send_message(psid=PSID, message=MESSAGE)

    assert len(graph_api.calls) == 1 and waits == []
    assert result.deferred and result.retry_after_ms == 30_000
    assert get_breaker().state() == "open"


def test_send_probe_answered_with_recipient_error_closes_circuit(graph_api, clock):
    """A probe that gets a recipient's own error proves the API is up: the circuit closes."""
    open_circuit()
    clock.advance(30_000)
    answer(graph_api, "send_error_user_unavailable")

    result = send_message(psid=PSID, message=MESSAGE)

    assert result.error_kind == SendErrorKind.RECIPIENT_UNAVAILABLE and not result.deferred
    assert get_breaker().state() == "closed"


def test_send_recipient_errors_do_not_count_toward_circuit(graph_api, clock):
    """Ten recipients who cannot be reached leave the circuit closed with no failure counted."""
    answer(graph_api, "send_error_user_unavailable", times=4)
    answer(graph_api, "send_error_outside_window", times=3)
    answer(graph_api, "send_error_no_matching_user", times=3)
    for _ in range(10):
        send_message(psid=PSID, message=MESSAGE)
    assert get_breaker().state() == "closed"
    assert get_breaker().failure_count() == 0


def test_send_neutral_errors_do_not_reset_failure_count(graph_api, waits, clock):
    """An invalid request between API failures neither counts nor resets the consecutive count."""
    breaker = get_breaker()
    for _ in range(3):
        breaker.record_failure(breaker.acquire())
    graph_api.post(SEND_URL, status=400, json={"error": {"code": 100, "message": "(#100) Invalid parameter"}})
    send_message(psid=PSID, message=MESSAGE)
    assert breaker.failure_count() == 3


def test_send_success_resets_failure_count(graph_api, clock):
    """A delivered message resets the consecutive failure count."""
    breaker = get_breaker()
    for _ in range(4):
        breaker.record_failure(breaker.acquire())
    answer(graph_api, "send_success")
    send_message(psid=PSID, message=MESSAGE)
    assert breaker.failure_count() == 0


def test_send_auth_errors_open_circuit(graph_api, clock):
    """A revoked page token fails every send: five of them open the circuit."""
    answer(graph_api, "send_error_invalid_token", times=5)
    results = [send_message(psid=PSID, message=MESSAGE) for _ in range(5)]
    assert [r.error_kind for r in results[:4]] == [SendErrorKind.AUTH] * 4
    assert results[4].deferred and results[4].error_code == 190
    assert get_breaker().state() == "open"


def test_send_goes_out_when_redis_is_down(graph_api, monkeypatch, caplog):
    """An unreachable Redis does not stop replies: the circuit fails open and says so in the log."""
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(circuit, "_redis", lambda: dead)
    caplog.set_level(logging.INFO)
    answer(graph_api, "send_success")

    result = send_message(psid=PSID, message=MESSAGE)

    assert result.ok and len(graph_api.calls) == 1
    assert "messenger.circuit.redis-unavailable" in [r.getMessage() for r in caplog.records]


# --- secrets and logs -------------------------------------------------------------------------


def formatted(records) -> str:
    """Every record as both production formatters would write it."""
    text, js = TextFormatter(), JsonFormatter()
    return "\n".join(f"{text.format(r)}\n{js.format(r)}\n{vars(r)!r}" for r in records)


def test_send_network_error_never_leaks_token(graph_api, waits, caplog):
    """A network error whose text quotes the URL and header leaves no token in logs or results."""
    caplog.set_level(logging.DEBUG)
    leaky = requests.ConnectionError(
        f"HTTPSConnectionPool: Max retries exceeded with url: /v25.0/me/messages?access_token={TOKEN} "
        f"(headers: Authorization: Bearer {TOKEN})"
    )
    for _ in range(4):
        graph_api.post(SEND_URL, body=leaky)

    result = send_message(psid=PSID, message=MESSAGE, log_context={"mid": "m_leak"})

    # A reset with no sign the connection was never made: in doubt, so sent once and not retried.
    assert result.error_kind == SendErrorKind.IN_DOUBT and result.attempts == 1
    assert TOKEN not in repr(result) and TOKEN not in str(result)
    assert caplog.records, "the failure must be logged"
    assert TOKEN not in caplog.text
    assert TOKEN not in formatted(caplog.records)
    assert "[redacted]" in formatted(caplog.records)  # the error text is kept, scrubbed


def test_send_api_errors_never_leak_token(graph_api, caplog):
    """An auth failure (the likeliest moment to dump a request) logs no token either."""
    caplog.set_level(logging.DEBUG)
    answer(graph_api, "send_error_invalid_token")
    result = send_message(psid=PSID, message=MESSAGE)
    assert TOKEN not in formatted(caplog.records) and TOKEN not in repr(result)


def test_send_logs_carry_mid_and_psid_hash_never_psid(graph_api, waits, caplog):
    """Failure lines carry mid, hashed PSID, code and fbtrace_id, and never the raw PSID."""
    caplog.set_level(logging.DEBUG)
    answer(graph_api, "send_error_user_unavailable")

    send_message(psid=PSID, message=MESSAGE, log_context={"mid": "m_abc", "psid": PSID})

    failed = [r for r in caplog.records if r.getMessage() == "messenger.send.failed"]
    assert len(failed) == 1
    record = failed[0]
    assert record.mid == "m_abc"
    assert record.psid_hash == hash_psid(PSID)
    assert (record.error_kind, record.error_code, record.fbtrace_id) == (
        "recipient_unavailable",
        551,
        "G3GRmtpZiq6",
    )
    assert PSID not in formatted(caplog.records)


def test_send_keeps_callers_psid_hash(graph_api, caplog):
    """A psid_hash passed by the caller is used as given."""
    caplog.set_level(logging.DEBUG)
    answer(graph_api, "send_error_invalid_token")
    send_message(psid=PSID, message=MESSAGE, log_context={"mid": "m_x", "psid_hash": "given"})
    assert {r.psid_hash for r in caplog.records if r.name == "messenger.send"} == {"given"}


# --- dry run ----------------------------------------------------------------------------------


def test_send_dry_run_records_and_logs_without_http(graph_api, caplog):
    """Without a page token nothing is sent: the body is kept, logged (PSID hashed), success-shaped."""
    caplog.set_level(logging.INFO)
    with override_settings(MESSENGER_PAGE_ACCESS_TOKEN=""):
        result = send_message(psid=PSID, message=MESSAGE, log_context={"mid": "m_dry"})

    assert len(graph_api.calls) == 0
    assert result.ok and result.dry_run and not result.deferred
    assert result.message_id.startswith("dryrun-") and len(result.message_id) > len("dryrun-")
    assert DRY_RUN_LOG[-1] == {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": MESSAGE}
    [record] = [r for r in caplog.records if r.getMessage() == "messenger.send.dry-run"]
    assert record.mid == "m_dry"
    assert json.loads(record.body) == {
        "recipient": {"id": f"psid_hash:{hash_psid(PSID)}"},
        "messaging_type": "RESPONSE",
        "message": MESSAGE,
    }
    assert PSID not in formatted(caplog.records)


def test_send_dry_run_log_is_bounded():
    """DRY_RUN_LOG keeps only the most recent bodies."""
    with override_settings(MESSENGER_PAGE_ACCESS_TOKEN=""):
        for i in range(DRY_RUN_LOG.maxlen + 5):
            send_message(psid=PSID, message={"text": str(i)})
    assert len(DRY_RUN_LOG) == DRY_RUN_LOG.maxlen
    assert DRY_RUN_LOG[-1]["message"] == {"text": str(DRY_RUN_LOG.maxlen + 4)}


def test_send_dry_run_ignores_open_circuit(graph_api, clock):
    """Dry run touches neither HTTP nor the circuit."""
    open_circuit()
    with override_settings(MESSENGER_PAGE_ACCESS_TOKEN=""):
        assert send_message(psid=PSID, message=MESSAGE).dry_run


# --- sender actions ---------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["mark_seen", "typing_on", "typing_off"])
def test_sender_action_body_shape(graph_api, action):
    """A sender action posts only recipient and sender_action, and returns no message id."""
    answer(graph_api, "send_success_sender_action")

    result = send_sender_action(psid=PSID, action=action)

    assert json.loads(graph_api.calls[0].request.body) == {"recipient": {"id": PSID}, "sender_action": action}
    assert graph_api.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert result.ok and result.message_id == "" and result.attempts == 1


def test_sender_action_makes_one_attempt_only(graph_api, waits):
    """A transient failure of a typing indicator is not retried."""
    answer(graph_api, "send_error_temporary", times=3)
    result = send_sender_action(psid=PSID, action="typing_on")
    assert len(graph_api.calls) == 1 and waits == []
    assert result.error_kind == SendErrorKind.TRANSIENT


def test_sender_action_skipped_while_circuit_open(graph_api, clock):
    """While the circuit is open a sender action makes no call and returns a deferred result."""
    open_circuit()
    result = send_sender_action(psid=PSID, action="typing_on")
    assert len(graph_api.calls) == 0
    assert result.deferred and result.error_kind == SendErrorKind.CIRCUIT_OPEN


def test_sender_action_unknown_name_is_invalid_request(graph_api):
    """An action Facebook doesn't know is refused locally, without a call or an exception."""
    result = send_sender_action(psid=PSID, action="dance")
    assert result.error_kind == SendErrorKind.INVALID_REQUEST
    assert len(graph_api.calls) == 0


def test_sender_action_never_raises(graph_api, monkeypatch, caplog):
    """Even a bug below it is logged and turned into a failed result."""

    def broken(**kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(send_api, "_deliver", broken)
    result = send_sender_action(psid=PSID, action="mark_seen")
    assert not result.ok and result.error_kind == SendErrorKind.UNKNOWN
    assert "messenger.send.sender-action-crashed" in [r.getMessage() for r in caplog.records]


def test_sender_action_dry_run(graph_api):
    """In dry-run mode a sender action is recorded and succeeds without a message id."""
    with override_settings(MESSENGER_PAGE_ACCESS_TOKEN=""):
        result = send_sender_action(psid=PSID, action="typing_off")
    assert result.ok and result.dry_run and result.message_id == ""
    assert DRY_RUN_LOG[-1] == {"recipient": {"id": PSID}, "sender_action": "typing_off"}
    assert len(graph_api.calls) == 0


# --- several pages (messenger.pages) ------------------------------------------------------------
@pytest.mark.django_db
def test_send_message_uses_the_page_token_of_page_id(graph_api):
    """A send naming its page goes out with that page's token, not MESSENGER_PAGE_ACCESS_TOKEN."""
    from messenger.pages import page_add

    page_add(page_id="777", name="Other", token="EAAotherPageToken")
    answer(graph_api, "send_success")
    answer(graph_api, "send_success")
    assert send_message(psid=PSID, message=MESSAGE, page_id="777").ok
    assert send_sender_action(psid=PSID, action="typing_on", page_id="777").ok
    headers = [call.request.headers["Authorization"] for call in graph_api.calls]
    assert headers == ["Bearer EAAotherPageToken", "Bearer EAAotherPageToken"]


@pytest.mark.django_db
def test_send_message_for_a_page_without_token_is_not_sent(graph_api, caplog):
    """Pages are configured but none serves this one: no call, invalid_request, logged without a token."""
    with override_settings(MESSENGER_PAGE_ID="888"):
        result = send_message(psid=PSID, message=MESSAGE, page_id="999")
    assert not result.ok and result.error_kind == SendErrorKind.INVALID_REQUEST
    assert len(graph_api.calls) == 0
    assert "messenger.send.unknown-page" in [record.getMessage() for record in caplog.records]
