"""The one fake Graph API on loopback, for the benches and the tests alike.

A threaded HTTP server on 127.0.0.1 that stands in for Facebook's Send API (``POST {base_url}/me/messages``)
and, for the ``openai`` chat engine, for an OpenAI-compatible chat server (``POST {url}/chat/completions``,
answered by echoing the user's last message). Real HTTP, so the project's own clients (pooled session,
timeouts, circuit breaker) are what is exercised, not a mock.

Fault modes of the Send API, set while it runs (:meth:`FakeGraph.set_mode`):

- ``"ok"``: HTTP 200 as Facebook answers (``message_id`` for a message, none for a sender action);
- ``"5xx"``: HTTP 500 with Facebook's transient error envelope; nothing delivered;
- ``"hang"``: no answer for ``hang_s`` (longer than the client's timeout), then the connection is
  closed; nothing delivered.

- ``"late"``: the message is *accepted* (recorded as delivered, and echoed) but answered only after
  ``hang_s``, past the client's timeout: the ambiguous send of issue 13 (Facebook delivered it, the
  caller saw a timeout).

Per recipient, ``refuse_psids[psid] = envelope`` answers messages to that PSID HTTP 400 with that
error envelope (a reply that can never be sent), whatever the mode: every one, or only the next
``refuse_left[psid]`` when that is set (then the user's later replies go through).

Echoes (``echo_to(url, secret)``): like Facebook with the ``message_echoes`` subscription, every
message accepted is POSTed back, signed, to the app's webhook as an echo (``is_echo``, ``app_id``,
``mid``, and the ``metadata`` the send carried), ``echo_delay_s`` later, except a share
``echo_drop_rate`` that never is. :func:`echo_body` builds the same body for a test to post itself.

``latency_s`` delays every Send API answer and ``chat_delay`` every chat answer (the peer taking time,
not the caller sleeping); ``chat_delay_for[text]`` overrides it for the chat calls whose last message
is ``text`` (a model that hangs on one question). ``chat_calls()`` lists each chat call's arrival,
answer time and last message, to tell what ran at once. Only bodies answered 200 are recorded as
delivered: a request that timed out is modelled as not delivered (see docs/performance.md on what a
real timeout could mean). Thread-safe.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

import requests

from harness.loopback import LoopbackServer
from harness.webhooks import PAGE_ID, encode, signed_headers

MODES = ("ok", "5xx", "hang", "late")
APP_ID = "1234567890"  # the app id the fake's echoes carry

TRANSIENT_ERROR = {
    "error": {
        "message": "An unexpected error has occurred.",
        "type": "OAuthException",
        "code": 2,
        "is_transient": True,
        "fbtrace_id": "fake-graph",
    }
}


@dataclass
class Received:
    """One Send API body the fake accepted (answered 200)."""

    at: float  # time.perf_counter() in the process that runs the fake, on arrival
    body: dict
    psid: str
    is_message: bool


@dataclass
class FaultCounters:
    ok: int = 0
    errors_5xx: int = 0
    hangs: int = 0
    sender_actions: int = 0
    late: int = 0
    refused: int = 0
    echoes_sent: int = 0
    echoes_dropped: int = 0


def echo_body(received: Received, *, message_id: str, page_id: str = PAGE_ID) -> dict:
    """The webhook body Facebook posts to echo a message the page sent (``message_echoes``)."""
    message = {"is_echo": True, "app_id": int(APP_ID), "mid": message_id, **received.body["message"]}
    item = {
        "sender": {"id": page_id},
        "recipient": {"id": received.psid},
        "timestamp": int(time.time() * 1000),
        "message": message,
    }
    return {"object": "page", "entry": [{"id": page_id, "time": item["timestamp"], "messaging": [item]}]}


class FakeGraph(LoopbackServer):
    """The fake Send API and chat server (its root ``url`` is ``CHATBOT_API_URL`` for the ``openai``
    engine); ``start()``/``stop()``, or use it as a context manager."""

    def __init__(self, *, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.chat_delay = 0.0
        self.mode = "ok"
        self.hang_s = 2.0
        self.chat_requests = 0
        self.chat_delay_for: dict[str, float] = {}
        self._chat_calls: list[tuple[float, float, str]] = []
        self.refuse_psids: dict[str, dict] = {}
        self.refuse_left: dict[str, int] = {}
        self.first_refused_at: dict[str, float] = {}  # time.time() of each PSID's first refusal
        self.echo_dropped_tokens: set[str] = set()
        self.echo_url = ""
        self.echo_secret = ""
        self.echo_delay_s = 0.2
        self.echo_drop_rate = 0.0
        self._echo_random = random.Random(13)
        self.counters = FaultCounters()
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._seq = 0
        super().__init__(self._handler_class(), name="fake-graph", backlog=256)

    @property
    def base_url(self) -> str:
        """``MESSENGER_GRAPH_API_URL`` for the project's Send API client."""
        return f"{self.url}/v25.0"

    def stop(self) -> None:
        self.chat_delay = self.latency_s = 0.0
        super().stop()

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.mode = mode

    def echo_to(self, url: str, secret: str, *, delay_s: float = 0.2, drop_rate: float = 0.0) -> None:
        """Echo every accepted message to the webhook at ``url``, signed with the app ``secret``."""
        self.echo_url, self.echo_secret = url, secret
        self.echo_delay_s, self.echo_drop_rate = delay_s, drop_rate

    # --- what it received ----------------------------------------------------------------------------

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def messages(self) -> list[Received]:
        """The message bodies delivered (sender actions left out), in order of arrival."""
        return [r for r in self.received() if r.is_message]

    def message_count(self) -> int:
        with self._lock:
            return sum(1 for r in self._received if r.is_message)

    def replies(self) -> list[str]:
        """The text of every message delivered, in order of arrival (``""`` for one without text)."""
        return [r.body["message"].get("text", "") for r in self.messages()]

    def clear(self) -> None:
        with self._lock:
            self._received.clear()
            self._chat_calls.clear()
            self.counters = FaultCounters()

    # --- answering -----------------------------------------------------------------------------------

    def chat_calls(self) -> list[tuple[float, float, str]]:
        """``(arrived, answered, last message)`` of each chat call answered, ``time.perf_counter()``."""
        with self._lock:
            return list(self._chat_calls)

    def _chat(self, body: dict) -> tuple[int, dict]:
        arrived = time.perf_counter()
        with self._lock:
            self.chat_requests += 1
        last = body["messages"][-1]["content"]
        _take(self.chat_delay_for.get(last, self.chat_delay))
        with self._lock:
            self._chat_calls.append((arrived, time.perf_counter(), last))
        return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": f"echo: {last}"}}]}

    def _graph(self, raw: bytes, arrived: float) -> tuple[int, dict] | None:
        """The Send API's answer, or ``None`` for a hang (no answer at all)."""
        mode = self.mode
        _take(self.latency_s)
        if mode == "hang":
            with self._lock:
                self.counters.hangs += 1
            _take(self.hang_s)
            return None
        if mode == "5xx":
            with self._lock:
                self.counters.errors_5xx += 1
            return 500, TRANSIENT_ERROR
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {"error": {"message": "bad json", "code": 100}}
        psid = str((body.get("recipient") or {}).get("id", ""))
        is_message = "message" in body
        if is_message and psid in self.refuse_psids:
            with self._lock:
                left = self.refuse_left.get(psid)
                refuse = left is None or left > 0
                if refuse:
                    self.counters.refused += 1
                    self.first_refused_at.setdefault(psid, time.time())
                    if left is not None:
                        self.refuse_left[psid] = left - 1
            if refuse:
                return 400, self.refuse_psids[psid]
        with self._lock:
            self._seq += 1
            seq = self._seq
            self._received.append(Received(at=arrived, body=body, psid=psid, is_message=is_message))
            if is_message:
                self.counters.ok += 1
            else:
                self.counters.sender_actions += 1
        answer = {"recipient_id": psid}
        if is_message:
            answer["message_id"] = f"m_fake_{seq}"
            self._echo_later(Received(at=arrived, body=body, psid=psid, is_message=True), answer["message_id"])
        if mode == "late":
            with self._lock:
                self.counters.late += 1
            _take(self.hang_s)
        return 200, answer

    def _echo_later(self, received: Received, message_id: str) -> None:
        if not self.echo_url:
            return
        with self._lock:
            dropped = self._echo_random.random() < self.echo_drop_rate
            if dropped:
                self.counters.echoes_dropped += 1
                self.echo_dropped_tokens.add(str(received.body["message"].get("metadata", "")))
        if dropped:
            return
        timer = threading.Timer(self.echo_delay_s, self._post_echo, args=(received, message_id))
        timer.daemon = True
        timer.start()

    def _post_echo(self, received: Received, message_id: str) -> None:
        raw = encode(echo_body(received, message_id=message_id))
        try:
            requests.post(self.echo_url, data=raw, headers=signed_headers(raw, self.echo_secret), timeout=5)
            with self._lock:
                self.counters.echoes_sent += 1
        except requests.RequestException:
            with self._lock:
                self.counters.echoes_dropped += 1

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as graph.facebook.com
            # Headers and body go out in two writes; with Nagle on, the second waits for the client's
            # delayed ACK (~40 ms) and a benchmark would measure the kernel, not the client.
            disable_nagle_algorithm = True

            def log_message(self, format, *args):
                return

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                arrived = time.perf_counter()
                if self.path.endswith("/chat/completions"):
                    answer = fake._chat(json.loads(raw or b"{}"))
                else:
                    answer = fake._graph(raw, arrived)
                if answer is None:
                    self.close_connection = True
                    return
                data = json.dumps(answer[1]).encode()
                try:
                    self.send_response(answer[0])
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    self.close_connection = True  # the client gave up (its timeout)

        return Handler


def _take(seconds: float) -> None:
    """A server-side delay: the fake peer taking time."""
    if seconds > 0:
        time.sleep(seconds)
