"""Webhooks as Facebook sends them: the one body builder, the one signer, a keep-alive poster.

The signer is the app's own :func:`messenger.signature.compute_signature`, so the benches, the tests
and ``manage.py messenger_simulate`` sign with the very HMAC the webhook checks.
"""

from __future__ import annotations

import http.client
import json
import time

from messenger.signature import SIGNATURE_HEADER, compute_signature

PAGE_ID = "516746941531643"  # the page of the webhook fixtures (tests/fixtures/messenger)
PSID = "7000000000000001"
WEBHOOK_PATH = "/messenger/v2/webhook"


def text_body(text: str, *, mid: str, psid: str = PSID, page_id: str = PAGE_ID, ts_ms: int | None = None) -> dict:
    """A webhook body with one text message, shaped as Facebook sends it; ``ts_ms`` defaults to now."""
    ts_ms = ts_ms if ts_ms is not None else int(time.time() * 1000)
    item = {
        "sender": {"id": psid},
        "recipient": {"id": page_id},
        "timestamp": ts_ms,
        "message": {"mid": mid, "text": text},
    }
    return {"object": "page", "entry": [{"id": page_id, "time": ts_ms, "messaging": [item]}]}


def encode(body: dict) -> bytes:
    """The raw bytes that are posted (and signed): what the webhook's signature check sees."""
    return json.dumps(body).encode()


def sign(body: bytes, secret: str) -> str:
    """The ``X-Hub-Signature-256`` header value Facebook sends for the raw ``body``."""
    return compute_signature(body=body, secret=secret)


def signed_headers(body: bytes, secret: str) -> dict[str, str]:
    """The headers of a signed webhook POST of ``body``."""
    return {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)}


class Poster:
    """A keep-alive HTTP/1.1 connection that posts signed webhook bodies (reconnects on error)."""

    def __init__(self, port: int, *, secret: str, timeout: float = 10.0) -> None:
        self.port = port
        self.secret = secret
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes, path: str = WEBHOOK_PATH) -> int:
        """POST ``body`` signed; returns the HTTP status (0 when both attempts failed to connect)."""
        headers = signed_headers(body, self.secret)
        for _ in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                self.conn.request("POST", path, body=body, headers=headers)
                response = self.conn.getresponse()
                response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status
            except (OSError, http.client.HTTPException):
                self.close()
        return 0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
