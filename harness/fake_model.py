"""A fake OpenAI-compatible model server on loopback: a model that takes its time, without a GPU.

``bench/pipeline.py`` measures the ``openai`` engine (``CHATBOT_ENGINE=openai``) against a model that
answers after a fixed delay (1 s by default, about what a hosted model takes for a short reply), so the
figure is what the channel itself does with a slow model: how many conversations a worker carries at
once, not how fast a model is. The delay is the peer taking time, in the server's own thread: the
server is threaded (one daemon thread per connection), so concurrent requests wait side by side and a
hundred callers get their answers after one delay, not a hundred.

It serves ``POST /v1/chat/completions`` as :mod:`engine.openai` calls it (``CHATBOT_API_URL`` is
:attr:`FakeModel.base_url`, ``.../v1``): a JSON body with ``model`` and ``messages``, ``Authorization:
Bearer <CHATBOT_API_KEY>`` when ``api_key`` is set (else 401), and answers a ``chat.completion`` whose
``choices[0].message.content`` is ``echo: <last message>``, with ``finish_reason`` and ``usage``.
Anything else gets 400/404 with an OpenAI-style error envelope. It counts the requests it answered and
the most it held at once (``peak_in_flight``: the concurrency the callers reached). Thread-safe.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler

from harness.loopback import LoopbackServer

COMPLETIONS_PATH = "/v1/chat/completions"


def completion_answer(body: dict, *, seq: int = 0) -> dict:
    """The ``chat.completion`` answering ``body``: ``echo: <content of the last message>``."""
    last = str(body["messages"][-1].get("content", ""))
    content = f"echo: {last}"
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    completion_tokens = len(content.split())
    return {
        "id": f"chatcmpl-fake-{seq}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model", "")),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _error(message: str, kind: str) -> dict:
    return {"error": {"message": message, "type": kind, "code": None}}


class FakeModel(LoopbackServer):
    """The fake model server; ``start()``/``stop()``, or use it as a context manager."""

    def __init__(self, *, delay_s: float = 1.0, api_key: str = "") -> None:
        self.delay_s = delay_s
        self.api_key = api_key
        self.requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        super().__init__(self._handler_class(), name="fake-model", backlog=512)

    @property
    def base_url(self) -> str:
        """``CHATBOT_API_URL`` for the ``openai`` engine (it appends ``/chat/completions``)."""
        return f"{self.url}/v1"

    def stop(self) -> None:
        self._stopped.set()  # requests still waiting answer at once
        super().stop()

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = 0
            self.peak_in_flight = self.in_flight

    def _answer(self, path: str, headers, raw: bytes) -> tuple[int, dict]:
        if path != COMPLETIONS_PATH:
            return 404, _error(f"no route {path}", "invalid_request_error")
        if self.api_key and headers.get("Authorization", "") != f"Bearer {self.api_key}":
            return 401, _error("invalid api key", "invalid_request_error")
        try:
            body = json.loads(raw)
            if not isinstance(body.get("model"), str) or not body.get("messages"):
                raise ValueError("model and messages are required")
        except (ValueError, AttributeError) as exc:
            return 400, _error(str(exc), "invalid_request_error")
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.delay_s > 0:
                self._stopped.wait(self.delay_s)
        finally:
            with self._lock:
                self.in_flight -= 1
                self.requests += 1
                seq = self.requests
        return 200, completion_answer(body, seq=seq)

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the engine's pooled session expects
            disable_nagle_algorithm = True  # headers and body are two writes (see harness/fake_graph.py)

            def log_message(self, format, *args):
                return

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = fake._answer(self.path, self.headers, raw)
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    self.close_connection = True  # the client gave up (its timeout)

        return Handler
