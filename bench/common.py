"""Shared helpers of the bench scripts: databases, subprocesses, a fake Graph API, percentiles, signing.

The bench scripts (``bench/ingress.py``, ``bench/pipeline.py``, ``bench/soak.py``) drive the project
the way production runs it: gunicorn and ``manage.py rqworker`` as subprocesses with their own
environment, PostgreSQL and Redis for real, and Facebook replaced by :class:`FakeGraph`, a threaded
HTTP server on 127.0.0.1 that records every Send API body it accepts. The bench process itself does
not set up Django: it talks to PostgreSQL with psycopg and to Redis with redis-py/rq, so what it
measures is only the subprocesses.

Contracts:

- Every subprocess is started in its own process group (``start_new_session``) and registered; the
  whole group is killed (SIGTERM, then SIGKILL) by :func:`stop_all`, which runs at exit and on
  SIGTERM/SIGINT/SIGHUP. A bench never leaves a gunicorn, worker or redis-server behind.
- Only loopback traffic: every server binds 127.0.0.1.
- Each script has its own PostgreSQL database ``chatbot_bench_<name>`` (created and migrated when
  missing, its app tables truncated at start) and its own Redis database number (flushed at start).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import hmac
import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
GUNICORN = str(ROOT / ".venv" / "bin" / "gunicorn")
LOG_DIR = ROOT / "var" / "bench"

PG_BASE_URL = os.environ.get("BENCH_PG_URL", "postgres://root@127.0.0.1:5432")
REDIS_BASE_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")

APP_SECRET = "bench-app-secret-0123456789abcdef"
SECRET_KEY = "bench-secret-key-" + "x" * 40
PAGE_TOKEN = "EAAbench-page-token-not-real"
PAGE_ID = "100000000000042"
WEBHOOK_PATH = "/messenger/v2/webhook"
BASELINE_PATH = "/bench/baseline"

# Tables the bench empties before a run (the apps' own data; auth, contenttypes and migrations stay).
APP_TABLE_PREFIXES = ("messenger_", "conversations_", "observability_")


# --- small helpers --------------------------------------------------------------------------------


def percentile(values: Iterable[float], pct: float) -> float:
    """The ``pct``-th percentile (0-100) with linear interpolation between ranks; NaN when empty."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    """The ``X-Hub-Signature-256`` header Facebook sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def text_webhook(*, psid: str, mid: str, text: str, page_id: str = PAGE_ID, ts_ms: int | None = None) -> bytes:
    """A webhook body with one text message, shaped as Facebook sends it."""
    ts_ms = ts_ms if ts_ms is not None else int(time.time() * 1000)
    item = {
        "sender": {"id": psid},
        "recipient": {"id": page_id},
        "timestamp": ts_ms,
        "message": {"mid": mid, "text": text},
    }
    return json.dumps({"object": "page", "entry": [{"id": page_id, "time": ts_ms, "messaging": [item]}]}).encode()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the usual small race is acceptable for a bench)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fmt_row(cells: Iterable[object], widths: Iterable[int]) -> str:
    out = []
    for cell, width in zip(cells, widths, strict=False):
        if isinstance(cell, float):
            cell = "nan" if math.isnan(cell) else f"{cell:.1f}" if abs(cell) >= 10 else f"{cell:.2f}"
        out.append(str(cell).rjust(width))
    return "  ".join(out)


def print_table(headers: list[str], rows: list[list[object]]) -> None:
    """A plain right-aligned table on stdout."""
    rendered = [[fmt_row([c], [0]).strip() for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rendered)) if rendered else len(h) for i, h in enumerate(headers)]
    print(fmt_row(headers, widths))
    print("  ".join("-" * w for w in widths))
    for row in rendered:
        print(fmt_row(row, widths))
    sys.stdout.flush()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- PostgreSQL -----------------------------------------------------------------------------------


def database_url(name: str) -> str:
    return f"{PG_BASE_URL.rstrip('/')}/chatbot_bench_{name}"


def _pg_connect(url: str, **kwargs):
    import psycopg

    return psycopg.connect(url, **kwargs)


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database named in ``url`` when it does not exist yet."""
    from psycopg import sql

    parts = urlsplit(url)
    db_name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with _pg_connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db_name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))
            log(f"created database {db_name}")


def prepare_database(name: str, env: dict[str, str]) -> str:
    """Create ``chatbot_bench_<name>`` when missing, migrate it, and empty the apps' tables.

    Returns its URL. ``env`` is the environment the project runs with (``manage.py migrate`` runs
    as a subprocess in it, so the bench process never imports Django).
    """
    url = database_url(name)
    ensure_database(url)
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**env, "DATABASE_URL": url},
        check=True,
    )
    truncate_app_tables(url)
    return url


def truncate_app_tables(url: str) -> None:
    """Empty the messenger, conversations and observability tables (a clean slate per run)."""
    from psycopg import sql

    with _pg_connect(url, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
            if row[0].startswith(APP_TABLE_PREFIXES)
        ]
        if tables:
            conn.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in tables)
                )
            )


class Db:
    """A small psycopg connection (autocommit) for the bench's own reads of the inbox."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn = _pg_connect(url, autocommit=True)

    def scalar(self, query: str, params: tuple = ()) -> object:
        row = self.conn.execute(query, params).fetchone()
        return row[0] if row else None

    def rows(self, query: str, params: tuple = ()) -> list[tuple]:
        return self.conn.execute(query, params).fetchall()

    def status_counts(self) -> dict[str, int]:
        return dict(self.rows("SELECT status, count(*) FROM messenger_inboundmessage GROUP BY status"))

    def open_count(self) -> int:
        return int(
            self.scalar(
                "SELECT count(*) FROM messenger_inboundmessage "
                "WHERE status IN ('pending', 'queued', 'processing', 'deferred')"
            )
            or 0
        )

    def close(self) -> None:
        self.conn.close()


# --- Redis ----------------------------------------------------------------------------------------


def redis_url(db: int, base: str = REDIS_BASE_URL) -> str:
    if db == 0 and base == REDIS_BASE_URL:
        raise ValueError("the bench never uses Redis db 0 of the shared server")
    return f"{base.rstrip('/')}/{db}"


def flush_redis(url: str) -> None:
    import redis

    conn = redis.Redis.from_url(url)
    try:
        conn.flushdb()
    finally:
        conn.close()


# --- subprocesses ---------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


_procs: list[Proc] = []
_procs_lock = threading.Lock()


def start_process(name: str, cmd: list[str], env: dict[str, str]) -> Proc:
    """Start ``cmd`` in its own process group, output to ``var/bench/<name>.log``; killed at exit."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{name}.log"
    with open(log_path, "wb") as out:
        popen = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    proc = Proc(name=name, popen=popen, log_path=log_path)
    with _procs_lock:
        _procs.append(proc)
    return proc


def kill_group(proc: Proc, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group of ``proc`` (the process and every child it forked)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def stop_process(proc: Proc, *, timeout: float = 5.0) -> None:
    """SIGTERM the group, wait up to ``timeout``, then SIGKILL it; reap the process."""
    if proc.alive():
        kill_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=timeout)
    kill_group(proc, signal.SIGKILL)  # children (work horses) may outlive the leader
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.popen.wait(timeout=5)
    with _procs_lock:
        if proc in _procs:
            _procs.remove(proc)


def stop_all() -> None:
    """Kill every subprocess a bench started (registered with :func:`start_process`)."""
    with _procs_lock:
        procs = list(_procs)
    for proc in procs:
        stop_process(proc, timeout=3.0)


def _on_signal(signum, frame) -> None:
    stop_all()
    sys.exit(128 + signum)


def install_cleanup() -> None:
    """Kill all subprocesses at exit and on SIGTERM/SIGINT/SIGHUP."""
    atexit.register(stop_all)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)


def project_env(*, db_url: str, redis: str, **overrides: object) -> dict[str, str]:
    """The environment of the project's processes: production settings, the bench's DB and Redis.

    ``LOG_LEVEL`` is WARNING unless overridden: one INFO line per event on a console is a cost of
    its own (the bench measures the code, not the terminal).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESSENGER_", "CHATBOT_", "DJANGO_", "RQ_"))}
    env.pop("DATABASE_TEST_NAME", None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "chatbot.settings",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": SECRET_KEY,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "MESSENGER_APP_SECRET": APP_SECRET,
            "MESSENGER_VERIFY_TOKEN": "bench-verify",
            "DATABASE_URL": db_url,
            "REDIS_URL": redis,
            "LOG_LEVEL": "WARNING",
            "CHATBOT_ENGINE": "rules",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def wait_http(port: int, path: str = "/healthz", *, timeout: float = 30.0, proc: Proc | None = None) -> None:
    """Wait until ``GET path`` answers 200 on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited (code {proc.popen.returncode}); see {proc.log_path}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status == 200:
                return
            last = f"HTTP {response.status}"
        except OSError as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    raise RuntimeError(f"127.0.0.1:{port}{path} did not answer 200 within {timeout} s ({last})")


# Two workers, four threads each: one process per core, and threads so that a request waiting on
# PostgreSQL or Redis does not leave its core idle. See docs/performance.md for the sweep.
GUNICORN_WORKERS = 2
GUNICORN_THREADS = 4


def start_gunicorn(env: dict[str, str], *, name: str = "gunicorn", port: int | None = None,
                   workers: int = GUNICORN_WORKERS, threads: int = GUNICORN_THREADS) -> tuple[Proc, int]:
    """gunicorn serving ``chatbot.wsgi`` on 127.0.0.1 (gthread workers, keep-alive); waits for /healthz."""
    port = port or free_port()
    cmd = [
        GUNICORN, "chatbot.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
        "--worker-class", "gthread", "--threads", str(threads), "--keep-alive", "30",
        "--backlog", "512", "--log-level", "warning", "--graceful-timeout", "5",
    ]
    proc = start_process(name, cmd, env)
    wait_http(port, proc=proc)
    return proc, port


# ``bench/pipeline.py --worker-class``: the rq worker class, chosen as ops choose it (``RQ_WORKER_CLASS``).
WORKER_CLASSES = {
    "messenger": "messenger.worker.MessengerWorker",  # the default: a work horse forked per job
    "inprocess": "messenger.worker.MessengerInProcessWorker",  # opt-in: jobs run in the worker process
}


def worker_class_env(worker_class: str) -> dict[str, str]:
    """The environment that selects ``worker_class`` (a key of :data:`WORKER_CLASSES`) for rqworker."""
    return {"RQ_WORKER_CLASS": WORKER_CLASSES[worker_class]}


def start_worker(env: dict[str, str], *, name: str, scheduler: bool = True) -> Proc:
    """``manage.py rqworker messenger_fast messenger_slow [--with-scheduler]``; the class is the one
    ``RQ_WORKER_CLASS`` in ``env`` names (see :func:`worker_class_env`), else the settings' default."""
    cmd = [PYTHON, "manage.py", "rqworker", "messenger_fast", "messenger_slow", "--name", name]
    if scheduler:
        cmd.append("--with-scheduler")
    return start_process(name, cmd, env)


def wait_workers(redis_conn, count: int, *, timeout: float = 30.0, procs: list[Proc] | None = None) -> None:
    """Wait until ``count`` rq workers are registered in Redis."""
    from rq import Worker

    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        for proc in procs or []:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited (code {proc.popen.returncode}); see {proc.log_path}")
        try:
            if Worker.count(connection=redis_conn) >= count:
                return
        except Exception as exc:  # Redis may be restarting: keep waiting, say why at the end
            last_error = type(exc).__name__
        time.sleep(0.1)
    raise RuntimeError(f"{count} rq workers did not register within {timeout} s {last_error}")


# --- memory ---------------------------------------------------------------------------------------


def _group_pids(pgids: set[int]) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) in pgids:  # field 5 of stat: pgrp
            pids.append(int(entry))
    return pids


def _mem_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in kB of one process; PSS splits pages shared after fork among their sharers."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


class MemorySampler:
    """Samples the summed RSS and PSS of some process groups every ``interval`` s; keeps the peaks."""

    def __init__(self, procs: Callable[[], list[Proc]], interval: float = 0.1) -> None:
        self.procs = procs
        self.interval = interval
        self.peak_rss_kb = 0
        self.peak_pss_kb = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = _group_pids({p.pid for p in self.procs()})
            rss = pss = 0
            for pid in pids:
                r, p = _mem_kb(pid)
                rss += r
                pss += p
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
            self.peak_pss_kb = max(self.peak_pss_kb, pss)
            self.peak_processes = max(self.peak_processes, len(pids))
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --- CPU accounting -------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(comm, pgrp, own cpu ticks, reaped children's cpu ticks) of one process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    comm = stat[stat.find("(") + 1 : stat.rfind(")")]
    fields = stat[stat.rfind(")") + 2 :].split()
    # fields[0] is stat field 3 (state): utime=14, stime=15, cutime=16, cstime=17 -> index - 3
    return comm, int(fields[2]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def cpu_snapshot(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far, per category: each named group of process-group ids, ``postgres``,
    ``redis-server`` and ``bench`` (this process and its children, e.g. the load generator).

    A group counts its live processes plus what its leaders reaped (rq's work horses, exited
    PostgreSQL backends via the postmaster). Differences of two snapshots give the CPU of an interval;
    processes outside the bench (another engineer's tests on the same PostgreSQL) are counted in
    ``postgres`` too, so read that figure as an upper bound.
    """
    pg_to_name = {pg: name for name, pgs in groups.items() for pg in pgs}
    totals = dict.fromkeys([*groups, "postgres", "redis-server", "bench"], 0)
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        info = _proc_stat(pid)
        if info is None:
            continue
        comm, pgrp, own, reaped = info
        name = pg_to_name.get(pgrp)
        if name is not None:
            totals[name] += own + (reaped if pid == pgrp else 0)
        elif comm.startswith("postgres"):
            totals["postgres"] += own + reaped
        elif comm.startswith("redis-server"):
            totals["redis-server"] += own
        elif pid == me:
            totals["bench"] += own + reaped
    return {k: v / _TICK for k, v in totals.items()}


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: max(0.0, after.get(k, 0.0) - before.get(k, 0.0)) for k in after}


# --- the fake Graph API ---------------------------------------------------------------------------


@dataclass
class Received:
    """One Send API body the fake accepted (answered 200)."""

    at: float  # time.perf_counter() in the bench process
    body: dict
    psid: str
    is_message: bool


@dataclass
class FaultCounters:
    ok: int = 0
    errors_5xx: int = 0
    hangs: int = 0
    sender_actions: int = 0
    extra: dict = field(default_factory=dict)


class FakeGraph:
    """A threaded fake of ``POST {base}/me/messages`` on 127.0.0.1, recording what it accepts.

    ``latency_s`` delays every answer. ``mode`` is ``"ok"``, ``"5xx"`` (HTTP 500 with Facebook's
    transient error envelope, nothing delivered) or ``"hang"`` (no answer for ``hang_s``, longer
    than the client's timeout, then the connection is closed; nothing delivered). Only bodies answered
    200 are recorded as delivered: a request that timed out is modelled as not delivered (see
    docs/performance.md on what a real timeout could mean). Thread-safe.
    """

    def __init__(self, *, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.mode = "ok"
        self.hang_s = 2.0
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self.counters = FaultCounters()
        self._seq = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._server.request_queue_size = 256
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-graph", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v25.0"

    def start(self) -> FakeGraph:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def set_mode(self, mode: str) -> None:
        assert mode in ("ok", "5xx", "hang")
        self.mode = mode

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def messages(self) -> list[Received]:
        return [r for r in self.received() if r.is_message]

    def message_count(self) -> int:
        with self._lock:
            return sum(1 for r in self._received if r.is_message)

    def clear(self) -> None:
        with self._lock:
            self._received.clear()
            self.counters = FaultCounters()

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as graph.facebook.com
            disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall

            def log_message(self, format, *args):
                return

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                arrived = time.perf_counter()
                mode = fake.mode
                if fake.latency_s:
                    time.sleep(fake.latency_s)
                if mode == "hang":
                    with fake._lock:
                        fake.counters.hangs += 1
                    time.sleep(fake.hang_s)
                    self.close_connection = True
                    return
                if mode == "5xx":
                    with fake._lock:
                        fake.counters.errors_5xx += 1
                    self._answer(500, {"error": {"message": "An unexpected error has occurred.",
                                                 "type": "OAuthException", "code": 2,
                                                 "is_transient": True, "fbtrace_id": "bench"}})
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._answer(400, {"error": {"message": "bad json", "code": 100}})
                    return
                psid = str((body.get("recipient") or {}).get("id", ""))
                is_message = "message" in body
                with fake._lock:
                    fake._seq += 1
                    seq = fake._seq
                    fake._received.append(Received(at=arrived, body=body, psid=psid, is_message=is_message))
                    if is_message:
                        fake.counters.ok += 1
                    else:
                        fake.counters.sender_actions += 1
                answer = {"recipient_id": psid}
                if is_message:
                    answer["message_id"] = f"m_bench_{seq}"
                self._answer(200, answer)

            def _answer(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    self.close_connection = True  # the client gave up (its timeout)

        return Handler


# --- posting webhooks -----------------------------------------------------------------------------


class Poster:
    """A keep-alive HTTP/1.1 connection that posts signed webhook bodies (reconnects on error)."""

    def __init__(self, port: int, *, timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes, path: str = WEBHOOK_PATH) -> int:
        """POST ``body`` signed; returns the HTTP status (0 on a connection error)."""
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)}
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
