"""Tests for harness/webhooks.py: the body builder, signer and poster agree with the app's own code."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness import webhooks
from harness.processes import free_port
from messenger.parsing import EventKind, parse_webhook
from messenger.signature import SIGNATURE_HEADER, check_signature
from messenger.storable import storable

SECRET = "harness-secret"


def test_text_body_parses_as_one_text_message():
    """The builder's body is what the app's parser reads as one message with the given fields."""
    body = webhooks.text_body("hello", mid="m_1", psid="123", ts_ms=1_700_000_000_000)
    (event,) = parse_webhook(body)
    assert (event.kind, event.text, event.mid, event.sender_id, event.page_id, event.timestamp) == (
        EventKind.MESSAGE, "hello", "m_1", "123", webhooks.PAGE_ID, 1_700_000_000_000,
    )


def test_odd_batch_holds_its_messages_and_the_ids_of_its_odd_items():
    """An odd batch parses into its text messages (NUL made storable) and one unreadable event per odd
    item or entry, whose derived ids the batch lists for the soak to look up."""
    texts = [("1", "m_a", "hi \x00 there"), ("2", "m_b", "hours \ud800?")]
    for n in range(3):
        batch = webhooks.odd_batch(texts, n=n, ts_ms=1_700_000_000_000, odd_entry=n == 0)
        events = parse_webhook(storable(json.loads(webhooks.encode(batch.body))))
        messages = sorted((e.sender_id, e.mid, e.text) for e in events if e.actionable)
        assert messages == [("1", "m_a", "hi \ufffd there"), ("2", "m_b", "hours \ufffd?")]
        assert batch.messages == [("1", "m_a"), ("2", "m_b")]
        assert sorted(batch.unreadable_mids) == sorted(e.mid for e in events if e.unreadable)
        assert len(batch.unreadable_mids) == (2 if n == 0 else 1)


def test_sign_passes_the_apps_signature_check():
    """The harness signs with the app's compute_signature: check_signature accepts it, and only it."""
    raw = webhooks.encode(webhooks.text_body("hello", mid="m_1"))
    assert check_signature(body=raw, header=webhooks.sign(raw, SECRET), secret=SECRET) is None
    assert check_signature(body=raw, header=webhooks.sign(raw, "other"), secret=SECRET) is not None


@pytest.fixture
def checking_server():
    """A loopback server answering 200 to a POST whose signature the app's check accepts, else 403."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            return

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ok = check_signature(body=raw, header=self.headers.get(SIGNATURE_HEADER), secret=SECRET) is None
            self.send_response(200 if ok and self.path == webhooks.WEBHOOK_PATH else 403)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_poster_posts_signed_bodies_on_one_connection(checking_server):
    """Every body is signed with the poster's secret; a wrong secret is refused like a forged webhook."""
    raw = webhooks.encode(webhooks.text_body("hello", mid="m_1"))
    poster = webhooks.Poster(checking_server, secret=SECRET)
    assert [poster.post(raw), poster.post(raw)] == [200, 200]
    poster.close()
    assert webhooks.Poster(checking_server, secret="forged").post(raw) == 403


def test_poster_reports_0_when_nothing_listens():
    """A refused connection is status 0, not an exception (a bench counts it and goes on)."""
    assert webhooks.Poster(free_port(), secret=SECRET, timeout=1).post(b"{}") == 0
