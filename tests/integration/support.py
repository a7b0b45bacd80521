"""Helpers for tests that run real processes: a fake Graph/chat server on loopback, rqworker and gunicorn.

The fake server stands in for Facebook's Send API (``POST .../me/messages``) and for an
OpenAI-compatible chat server (``POST /chat/completions``), each with a delay the test controls, so
"a chat engine or Send API that takes a controlled time" is a real HTTP peer, not a mock.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


class FakeServer:
    """Records every Send API body; answers chat completions by echoing the user's last message."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.chat_requests = 0
        self.chat_delay = 0.0
        self.graph_delay = 0.0
        self._lock = threading.Lock()
        self._counter = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                return

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                reply = fake.chat(body) if self.path.endswith("/chat/completions") else fake.graph(body)
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def chat(self, body: dict) -> dict:
        with self._lock:
            self.chat_requests += 1
        _wait(self.chat_delay)
        last = body["messages"][-1]["content"]
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": f"echo: {last}"}}]}

    def graph(self, body: dict) -> dict:
        _wait(self.graph_delay)
        with self._lock:
            self._counter += 1
            if "message" in body:
                self.sent.append(body)
            return {"recipient_id": body["recipient"]["id"], "message_id": f"m_fake_{self._counter}"}

    def replies(self) -> list[str]:
        with self._lock:
            return [b["message"].get("text", "") for b in self.sent]

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.chat_delay = self.graph_delay = 0.0
        self.httpd.shutdown()
        self.httpd.server_close()


def _wait(seconds: float) -> None:
    """A server-side delay (this is the fake peer taking time, not the test sleeping)."""
    if seconds > 0:
        threading.Event().wait(seconds)


IN_PROCESS_WORKER = "messenger.worker.MessengerInProcessWorker"


def process_env(fake: FakeServer, *, worker_class: str | None = None, **overrides: str) -> dict[str, str]:
    """Environment for a subprocess that uses the test database, the test Redis and the fake server.

    ``worker_class`` selects the rq worker class (``RQ_WORKER_CLASS``); unset, the settings' default.
    """
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": (
            f"postgres://{db['USER'] or 'root'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "REDIS_URL": settings.REDIS_URL,
        "MESSENGER_GRAPH_API_URL": f"{fake.url}/v25.0",
        "MESSENGER_PAGE_ACCESS_TOKEN": "EAAintegrationtoken",
        "MESSENGER_APP_SECRET": settings.MESSENGER_APP_SECRET,
        "CHATBOT_ENGINE": "openai",
        "CHATBOT_API_URL": fake.url,
        "CHATBOT_MODEL": "fake-model",
        "MESSENGER_PROCESSING_TIMEOUT_MS": "60000",
        "CHATBOT_API_TIMEOUT_MS": "60000",
        "MESSENGER_RECOVERY_INTERVAL_SECONDS": "2",
        "MESSENGER_LEASE_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DATABASE_TEST_NAME", None)
    env.pop("RQ_WORKER_CLASS", None)
    if worker_class:
        env["RQ_WORKER_CLASS"] = worker_class
    env.update(overrides)
    return env


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when the test process dies (Linux ``PR_SET_PDEATHSIG``), so
    a test run that is killed never leaves a worker behind to sweep the next run's database."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


class Worker:
    """``python manage.py rqworker messenger_fast messenger_slow --with-scheduler`` as ops run it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", "messenger_fast", "messenger_slow", "--with-scheduler"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killpg reaches it and its scheduler
            preexec_fn=die_with_parent,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def horse_pid(self) -> int | None:
        """The work horse: rq forks it into a process group of its own."""
        for child in _children(self.pid):
            try:
                if os.getpgid(child) == child:
                    return child
            except ProcessLookupError:
                continue
        return None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill_hard(self, *, with_horse: bool = True) -> None:
        """SIGKILL the worker (and its scheduler); with ``with_horse`` its work horse too."""
        horse = self.horse_pid() if with_horse else None
        for pid, group in ((self.pid, True), (horse, False)):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    (os.killpg if group else os.kill)(pid, signal.SIGKILL)
        self.proc.wait(10)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill_hard()
        self._log.close()

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ..." — comm may hold spaces; split after the last ")".
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def wait_until(predicate, timeout: float, interval: float = 0.05, message: str = "condition") -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        threading.Event().wait(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def body_for(text: str, *, mid: str, psid: str = "7000000000000001", ts: int | None = None) -> dict:
    """A webhook body with one text message, shaped as Facebook sends it."""
    ts = ts or int(time.time() * 1000)
    item = {
        "sender": {"id": psid},
        "recipient": {"id": "516746941531643"},
        "timestamp": ts,
        "message": {"mid": mid, "text": text},
    }
    return {"object": "page", "entry": [{"id": "516746941531643", "time": ts, "messaging": [item]}]}


def status_of(mid: str) -> str | None:
    """The inbox status of the message with Facebook id ``mid``."""
    from messenger.models import InboundMessage

    return InboundMessage.objects.filter(mid=mid).values_list("status", flat=True).first()
