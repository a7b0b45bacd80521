"""Webhooks as Facebook sends them: the one body builder, the one signer, a keep-alive poster.

The signer is the app's own :func:`messenger.signature.compute_signature`, so the benches, the tests
and ``manage.py messenger_simulate`` sign with the very HMAC the webhook checks.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass, field

from messenger.parsing import parse_webhook
from messenger.signature import SIGNATURE_HEADER, compute_signature
from messenger.storable import storable

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


# Items of shapes the parser can't read, as Facebook sends them after a change it made, or broken: the
# 2026 sticker attachment given as an object, a share whose text became an object, an event key we
# don't know. ``n`` makes each one distinct, so each is its own kept row.
def _odd_sticker(psid: str, page_id: str, ts_ms: int, n: int) -> dict:
    message = {"mid": f"m_odd_sticker_{n}", "attachments": {"type": "sticker", "payload": {"sticker_id": n}}}
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": ts_ms, "message": message}


def _odd_share(psid: str, page_id: str, ts_ms: int, n: int) -> dict:
    message = {"mid": f"m_odd_share_{n}", "text": {"share": {"url": f"https://example.com/{n}"}}}
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": ts_ms, "message": message}


def _odd_event(psid: str, page_id: str, ts_ms: int, n: int) -> dict:
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": ts_ms, "brand_new_event": {"n": n}}


ODD_ITEMS = (_odd_sticker, _odd_share, _odd_event)


@dataclass
class OddBatch:
    """One signed body mixing users' text messages with items the parser can't read.

    ``messages`` are the ``(psid, mid)`` of the text messages (each must be answered once);
    ``unreadable_mids`` the ids the inbox gives the odd items (derived by the app's own parser, so
    the soak can look each one up).
    """

    body: dict
    messages: list[tuple[str, str]] = field(default_factory=list)
    unreadable_mids: list[str] = field(default_factory=list)


def odd_batch(
    texts: list[tuple[str, str, str]], *, n: int, page_id: str = PAGE_ID, ts_ms: int | None = None,
    odd_entry: bool = False,
) -> OddBatch:
    """A body with the text messages ``texts`` (``(psid, mid, text)``, texts may hold NUL or lone
    surrogates), one odd item (``ODD_ITEMS[n % 3]``) among them and, with ``odd_entry``, a second entry
    that is not an object at all."""
    ts_ms = ts_ms if ts_ms is not None else int(time.time() * 1000)
    items = [
        {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": ts_ms + i,
         "message": {"mid": mid, "text": text}}
        for i, (psid, mid, text) in enumerate(texts)
    ]
    odd = ODD_ITEMS[n % len(ODD_ITEMS)](texts[0][0] if texts else "", page_id, ts_ms, n)
    items.insert(len(items) // 2, odd)
    entries: list = [{"id": page_id, "time": ts_ms, "messaging": items}]
    if odd_entry:
        entries.append(f"odd entry {n}")
    body = {"object": "page", "entry": entries}
    events = parse_webhook(storable(json.loads(encode(body))))
    return OddBatch(
        body=body,
        messages=[(psid, mid) for psid, mid, _text in texts],
        unreadable_mids=[event.mid for event in events if event.unreadable],
    )


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
