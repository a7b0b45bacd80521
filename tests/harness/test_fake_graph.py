"""Tests for harness/fake_graph.py: the one fake Graph API both the benches and the tests rely on."""

from __future__ import annotations

import time

import pytest
import requests

from harness.fake_graph import FakeGraph


@pytest.fixture
def fake():
    with FakeGraph() as server:
        yield server


def _send(fake: FakeGraph, body: dict, timeout: float = 5.0) -> requests.Response:
    return requests.post(f"{fake.base_url}/me/messages", json=body, timeout=timeout)


MESSAGE = {"recipient": {"id": "42"}, "messaging_type": "RESPONSE", "message": {"text": "hi"}}
ACTION = {"recipient": {"id": "42"}, "sender_action": "typing_on"}


def test_ok_mode_answers_as_facebook_and_records_what_was_delivered(fake):
    """A message gets recipient and message ids; a sender action only the recipient; both are recorded."""
    first, second = _send(fake, MESSAGE), _send(fake, ACTION)
    assert first.status_code == second.status_code == 200
    assert first.json()["recipient_id"] == "42" and first.json()["message_id"]
    assert second.json() == {"recipient_id": "42"}
    assert [r.body for r in fake.received()] == [MESSAGE, ACTION]
    assert [r.psid for r in fake.messages()] == ["42"]
    assert fake.replies() == ["hi"] and fake.message_count() == 1
    assert (fake.counters.ok, fake.counters.sender_actions) == (1, 1)


def test_5xx_mode_answers_a_transient_error_and_delivers_nothing(fake):
    """HTTP 500 with Facebook's transient envelope; nothing is recorded as delivered."""
    fake.set_mode("5xx")
    response = _send(fake, MESSAGE)
    assert response.status_code == 500
    assert response.json()["error"]["is_transient"] is True
    assert fake.received() == [] and fake.counters.errors_5xx == 1


def test_hang_mode_never_answers_and_delivers_nothing(fake):
    """The client's timeout fires; nothing is recorded as delivered."""
    fake.hang_s = 0.5
    fake.set_mode("hang")
    with pytest.raises(requests.exceptions.ReadTimeout):
        _send(fake, MESSAGE, timeout=0.2)
    assert fake.received() == [] and fake.counters.hangs == 1


def test_latency_delays_every_send(fake):
    """``latency_s`` is the fake peer taking time before it answers."""
    fake.latency_s = 0.2
    started = time.monotonic()
    assert _send(fake, MESSAGE).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_chat_completions_echo_the_last_message(fake):
    """The OpenAI-compatible endpoint answers ``echo: <last user message>`` and counts its calls."""
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "ping"}]}
    response = requests.post(f"{fake.url}/chat/completions", json=body, timeout=5)
    assert response.json()["choices"][0]["message"]["content"] == "echo: ping"
    assert fake.chat_requests == 1 and fake.received() == []


def test_unknown_mode_is_refused(fake):
    """A typo in a fault schedule fails loudly instead of running in ``ok`` mode."""
    with pytest.raises(ValueError, match="mode must be one of"):
        fake.set_mode("slow")


def test_clear_forgets_bodies_and_counters(fake):
    """Between a bench's phases the fake starts from nothing."""
    _send(fake, MESSAGE)
    fake.clear()
    assert fake.received() == [] and fake.counters.ok == 0


def test_late_mode_delivers_then_answers_after_the_timeout(fake):
    """'late': the message is recorded as delivered, but the answer comes after the client gave up."""
    fake.set_mode("late")
    fake.hang_s = 1.0
    with pytest.raises(requests.ReadTimeout):
        _send(fake, MESSAGE, timeout=0.3)
    assert fake.replies() == ["hi"] and fake.counters.late == 1


def test_refused_psid_gets_the_envelope_for_its_budget_then_goes_through(fake):
    """A recipient refused for its next two messages: two 400s with the envelope, then a 200."""
    envelope = {"error": {"code": 9999, "message": "never"}}
    fake.refuse_psids["42"] = envelope
    fake.refuse_left["42"] = 2
    answers = [_send(fake, MESSAGE) for _ in range(3)]
    assert [a.status_code for a in answers] == [400, 400, 200]
    assert answers[0].json() == envelope and fake.replies() == ["hi"]


def test_echoes_are_posted_signed_to_the_webhook_with_the_metadata(fake):
    """With echo_to(url, secret), an accepted message comes back as a signed echo carrying its metadata."""
    import hashlib
    import hmac
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got = []
    arrived = threading.Event()

    class Hook(BaseHTTPRequestHandler):
        def log_message(self, *args):
            return

        def do_POST(self):
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((raw, self.headers["X-Hub-Signature-256"]))
            arrived.set()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        fake.echo_to(f"http://127.0.0.1:{hook.server_address[1]}/hook", "s3cret", delay_s=0.05)
        answer = _send(fake, {**MESSAGE, "message": {"text": "hi", "metadata": "cb1.tok"}}).json()
        assert arrived.wait(5), "no echo reached the webhook within 5 s"
    finally:
        hook.shutdown()
    raw, signature = got[0]
    assert signature == "sha256=" + hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
    message = json.loads(raw)["entry"][0]["messaging"][0]["message"]
    assert message["is_echo"] is True and message["metadata"] == "cb1.tok"
    assert message["mid"] == answer["message_id"]
