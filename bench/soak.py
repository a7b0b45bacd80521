"""Fault soak: many users, a failing Send API, SIGKILLed workers and a Redis restart; then count the replies.

Usage (from the repository root)::

    .venv/bin/python bench/soak.py --quick          # CI form: 300 messages, 60 users, under 2 minutes
    .venv/bin/python bench/soak.py                  # 2,000 messages, 250 users, about 3 minutes
    .venv/bin/python bench/soak.py --messages 5000 --users 500 --rate 20   # the long form

Set-up (all on loopback, all stopped at exit): its own ``redis-server`` on ``--redis-port`` (6390,
no persistence, so restarting it loses every queued job, as a real crash of an unpersisted Redis
would); PostgreSQL ``chatbot_bench_soak``; gunicorn (production settings); ``--workers`` (2)
``manage.py rqworker messenger_fast messenger_slow --with-scheduler``; the fake Graph API of
``harness.fake_graph`` with a page token set. Short timeouts keep the run short:
``MESSENGER_SEND_TIMEOUT_MS=300``, ``MESSENGER_RETRY_BASE_MS=50``, ``MESSENGER_MAX_RETRIES=2``,
``MESSENGER_CIRCUIT_COOLDOWN_MS=1500``, ``MESSENGER_RECOVERY_INTERVAL_SECONDS=2``,
``MESSENGER_PROCESSING_TIMEOUT_MS=3000``.

While the messages are posted through the signed webhook at ``--rate`` per second (each user's
messages in timestamp order, spread over the run; a refused POST is redelivered, as Facebook does):

- the fake Graph answers HTTP 500 for a stretch, then hangs past the client's timeout for a stretch
  (nothing is delivered in either mode);
- a worker (its whole process group: the worker and its work horse) is SIGKILLed at random times
  (``random.Random(--seed)``) and restarted after a short pause; a worker that exits on its own is
  restarted too (as systemd or Kubernetes would) and counted;
- Redis is SIGKILLed once and started again, empty;
- ``--odd-batches`` bodies each batch two new users' text messages with an item the parser can't
  read (the 2026 sticker and share shapes, an unknown event; every third body also an entry that is
  not an object), and the texts carry NUL characters and lone surrogates (:func:`post_odd_batches`).

The delivery faults of issue 13 (``plan_delivery_faults``): the fake Graph echoes every message it
accepts to the webhook, signed (``message_echoes``), ``ECHO_DELAY_S`` later, and drops
``ECHO_DROP_RATE`` of the echoes; for a stretch it accepts sends but answers past the client's timeout
(``late``: delivered, yet the worker sees a timeout); a worker gets SIGTERM during that stretch (a
stop mid-send); a worker and its work horse are paused (SIGSTOP) past the lease, then resumed
(SIGCONT); ``--poison`` users' first message is refused with an error in no table until it gives up.
``MESSENGER_ECHO_WAIT_MS=2000`` and ``MESSENGER_LEASE_SECONDS=3`` keep the run short.

Then it waits (bounded) until every inbound row is final and compares what the fake Graph accepted
with what the inbox says was to be sent: per user, the reply parts of each message in order are
matched against the Send API bodies received for that user. ``lost`` counts messages without a
complete reply (not final, not answered, a part never received, or a posted message not in the
inbox; a poison message that gave up is expected, not lost); ``duplicated`` counts Send API message
bodies received beyond those expected, except a part re-sent after the echo wait because the fake
dropped its echo (the documented at-least-once case, counted apart); ``blocked`` counts a poison
user's later messages not answered within ``BLOCKED_BOUND_S`` of being kept. The odd batches are
counted by :func:`check_odd_batches` into the same ``lost`` and ``duplicated`` (each of their text
messages answered exactly once), plus ``odd_lost``: odd items not kept with the status ``unreadable``.
The closing line starts ``lost=N duplicated=N blocked=N``; the exit status is 1 when any of them or
``odd_lost`` is non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from queue import Empty, Queue

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from harness import processes, webhooks
from harness.db import Db
from harness.fake_graph import FakeGraph

SOAK_SETTINGS = {
    "MESSENGER_SEND_TIMEOUT_MS": 300,
    "MESSENGER_RETRY_BASE_MS": 50,
    "MESSENGER_MAX_RETRIES": 2,
    "MESSENGER_CIRCUIT_FAILURE_THRESHOLD": 5,
    "MESSENGER_CIRCUIT_COOLDOWN_MS": 1500,
    "MESSENGER_RECOVERY_INTERVAL_SECONDS": 2,
    "MESSENGER_PROCESSING_TIMEOUT_MS": 3000,
    "MESSENGER_SHUTDOWN_TIMEOUT_MS": 3000,
    # Issue 13: echoes settle sends in doubt within this wait; a lease short enough to pause a worker past.
    "MESSENGER_ECHO_WAIT_MS": 2000,
    "MESSENGER_LEASE_SECONDS": 3,
}
# The fake Graph echoes accepted messages this long after, and drops this share of the echoes.
ECHO_DELAY_S = 0.3
ECHO_DROP_RATE = 0.1
# A poison user's first message is refused this many times (code 9999, in no table): it gives up.
POISON_REFUSALS = 4
POISON_ERROR = {"error": {"message": "an error in no table", "type": "OAuthException", "code": 9999,
                          "fbtrace_id": "soak-poison"}}
# A later message of a poison user still waiting this long after the poison's first refusal counts as
# blocked: the give-up bound (messenger.delivery.MESSAGE_GIVE_UP_BOUND_S, 60 s) plus the backlog the
# run's own faults make. The Redis restart empties every queue at once: the sweep requeues all open
# rows (about 280 in the quick run) and two workers work through them while the poison's next try
# waits its turn; a run where the restart fell right after a poison's first refusal measured 91 s.
# (Before its first refusal the poison waits like any message: page-wide faults.)
BLOCKED_BOUND_S = 120


class RedisServer:
    """The soak's own redis-server (no persistence), restartable."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: processes.Proc | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.proc = processes.start_process(
            f"soak-redis-{self.starts}",
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no"],
            {"PATH": "/usr/bin:/bin:/usr/local/bin"},
            log_dir=common.LOG_DIR,
        )
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.5).ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start; see {self.proc.log_path}")

    def kill(self) -> None:
        if self.proc is not None:
            processes.kill_group(self.proc, signal.SIGKILL)
            processes.stop_process(self.proc, timeout=1)
            self.proc = None


class Workers:
    """``--workers`` worker slots: kill one on schedule, restart it; restart any that exit on their own."""

    def __init__(self, env: dict[str, str], count: int) -> None:
        self.env = env
        self.slots: list[processes.Proc | None] = [None] * count
        self.generation = [0] * count
        self.killed = 0
        self.exited_on_their_own = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)
        self.down_until = [0.0] * count

    def start_slot(self, i: int) -> None:
        self.generation[i] += 1
        name = f"soak-w{i + 1}-{self.generation[i]}"
        self.slots[i] = processes.start_worker(self.env, name=name, rq_name=name, log_dir=common.LOG_DIR)

    def start(self) -> None:
        for i in range(len(self.slots)):
            self.start_slot(i)
        self._thread.start()

    def sigkill(self, i: int, pause: float) -> None:
        with self.lock:
            proc = self.slots[i]
            if proc is None:
                return
            processes.kill_group(proc, signal.SIGKILL)
            processes.stop_process(proc, timeout=1)
            self.slots[i] = None
            self.killed += 1
            self.down_until[i] = time.monotonic() + pause

    def signal(self, i: int, sig: int) -> list[int]:
        """Send ``sig`` to slot ``i`` if running: SIGTERM to the worker alone (its graceful stop; the
        watcher restarts it, counted as exited on its own); SIGSTOP to its process group and its work
        horse (a group of its own), frozen together as a paused VM or container would be. Returns the
        pids signalled, for the SIGCONT (:meth:`resume`)."""
        with self.lock:
            proc = self.slots[i]
        if proc is None or not proc.alive():
            return []
        if sig == signal.SIGTERM:
            proc.signal(sig)
            return [proc.pid]
        horse = proc.horse_pid()
        processes.kill_group(proc, sig)
        if horse:
            with contextlib.suppress(ProcessLookupError):
                os.kill(horse, sig)
        return [proc.pid, *([horse] if horse else [])]

    @staticmethod
    def resume(pids: list[int]) -> None:
        for n, pid in enumerate(pids):
            with contextlib.suppress(ProcessLookupError):
                if n == 0:
                    os.killpg(pid, signal.SIGCONT)  # the worker's group
                else:
                    os.kill(pid, signal.SIGCONT)  # its work horse

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            with self.lock:
                for i, proc in enumerate(self.slots):
                    if proc is None:
                        if time.monotonic() >= self.down_until[i]:
                            self.start_slot(i)
                    elif not proc.alive():
                        self.exited_on_their_own += 1
                        common.log(f"{proc.name} exited on its own (code {proc.popen.returncode}); restarting")
                        processes.stop_process(proc, timeout=1)
                        self.start_slot(i)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self.lock:
            for proc in self.slots:
                if proc is not None:
                    processes.kill_group(proc, signal.SIGTERM)
            for proc in self.slots:
                if proc is not None:
                    processes.stop_process(proc, timeout=8)
            self.slots = [None] * len(self.slots)

    def log_paths(self) -> list[Path]:
        return sorted(common.LOG_DIR.glob("soak-w*.log"))


def plan(args, rng: random.Random) -> tuple[list[tuple[str, str, str, int]], dict]:
    """The messages (psid, mid, text, ts_ms order) and the fault schedule (seconds from the start)."""
    run = uuid.uuid4().hex[:6]
    users = [f"8{int(run, 16) % 10**5:05d}{u:06d}" for u in range(args.users)]
    messages = []
    per_user: Counter = Counter()
    for n in range(args.messages):
        psid = users[n % len(users)]
        k = per_user[psid]
        per_user[psid] += 1
        text = common.TEXTS[(n // len(users) + int(psid)) % len(common.TEXTS)] if k else "hello"
        messages.append((psid, f"m_soak_{run}_{n}", f"{text} #{k}", k))
    load_s = args.messages / args.rate
    faults = {
        "5xx": (0.15 * load_s, 0.15 * load_s + args.fault_seconds / 2),
        "hang": (0.15 * load_s + args.fault_seconds / 2, 0.15 * load_s + args.fault_seconds),
        "redis_restart": rng.uniform(0.4 * load_s, 0.7 * load_s),
        "kills": sorted(
            (rng.uniform(0.05 * load_s, load_s + 5), rng.randrange(args.workers), rng.uniform(0.3, 2.0))
            for _ in range(args.kills)
        ),
    }
    return messages, faults


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def post_all(port: int, messages, rate: float, posted: dict, refused: list, threads: int = 4) -> threading.Thread:
    """Post every message at ``rate``/s from ``threads`` clients (in the background); redeliver refusals."""
    work: Queue = Queue()
    start = time.perf_counter() + 0.1

    def scheduler() -> None:
        for i, msg in enumerate(messages):
            at = start + i / rate
            now = time.perf_counter()
            if at > now:
                time.sleep(at - now)
            ts_ms = int(time.time() * 1000)
            work.put((msg, ts_ms))
        for _ in range(threads):
            work.put(None)

    def client() -> None:
        poster = webhooks.Poster(port, secret=common.APP_SECRET, timeout=15)
        while True:
            try:
                item = work.get(timeout=600)
            except Empty:
                return
            if item is None:
                return
            (psid, mid, text, _k), ts_ms = item
            body = webhooks.encode(webhooks.text_body(text, mid=mid, psid=psid, ts_ms=ts_ms))
            for attempt in range(10):  # Facebook redelivers a webhook it got no 200 for
                status = poster.post(body)
                if status == 200:
                    posted[mid] = attempt + 1
                    break
                time.sleep(0.5 * (attempt + 1))
            else:
                refused.append(mid)

    def run() -> None:
        ts = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
        for t in ts:
            t.start()
        scheduler()
        for t in ts:
            t.join()

    thread = threading.Thread(target=run, name="poster", daemon=True)
    thread.start()
    return thread


def received_bodies(fake: FakeGraph) -> tuple[dict[str, list[str]], int]:
    """The message bodies the fake accepted, per user in order, each without its ``metadata`` token,
    and how many were a part sent again because the fake dropped its echo (the documented
    at-least-once case: left out of the bodies, counted apart)."""
    received: dict[str, list[str]] = defaultdict(list)
    seen_tokens: set[str] = set()
    resent_without_echo = 0
    for r in sorted(fake.messages(), key=lambda r: r.at):
        message = dict(r.body.get("message") or {})
        token = message.pop("metadata", "")
        if token in seen_tokens and token in fake.echo_dropped_tokens:
            resent_without_echo += 1
            continue
        seen_tokens.add(token)
        received[r.psid].append(json.dumps(message, sort_keys=True))
    return received, resent_without_echo


def compare(db: Db, fake: FakeGraph, messages, posted: dict, poison_mids: frozenset = frozenset()) -> dict:
    """Match the Send API bodies the fake accepted against the reply parts the inbox recorded.

    Each body is compared without its ``metadata`` token. A part sent again because its echo never
    came (the fake dropped it) is the documented at-least-once case: counted apart, not duplicated.
    A poison message (``poison_mids``) that gave up is what should happen to it: not lost.
    """
    rows = {
        mid: (rid, status, reason)
        for rid, mid, status, reason in db.rows("SELECT id, mid, status, status_reason FROM messenger_inboundmessage")
    }
    parts: dict[int, list[str]] = defaultdict(list)
    for inbound_id, body in db.rows(
        "SELECT inbound_id, body FROM messenger_outboundpart ORDER BY inbound_id, position"
    ):
        parts[inbound_id].append(json.dumps(body, sort_keys=True))
    received, resent_without_echo = received_bodies(fake)
    given_up = 0

    lost: Counter = Counter()
    lost_examples: list[str] = []
    duplicated = 0
    dup_examples: list[str] = []
    out_of_order = 0
    by_user: dict[str, list] = defaultdict(list)
    for psid, mid, text, k in messages:
        by_user[psid].append((k, mid, text))
    for psid, items in by_user.items():
        pool = Counter(received.get(psid, []))
        expected_sequence: list[str] = []
        for _k, mid, _text in sorted(items):
            if mid not in posted:
                lost["never accepted by the webhook"] += 1
                continue
            row = rows.get(mid)
            if row is None:
                lost["not in the inbox"] += 1
                lost_examples.append(mid)
                continue
            rid, status, reason = row
            if mid in poison_mids and status == "failed" and reason.startswith("gave up"):
                given_up += 1
                continue
            if status != "answered":
                lost[f"status {status}: {reason[:40]}"] += 1
                lost_examples.append(f"{mid} ({status})")
            want = parts.get(rid, [])
            if status == "answered" and not want:
                lost["answered without parts"] += 1
            missing = False
            for body in want:
                if pool[body] > 0:
                    pool[body] -= 1
                else:
                    missing = True
            if missing and status == "answered":
                lost["a part never reached the Send API"] += 1
                lost_examples.append(f"{mid} (part missing)")
            expected_sequence.extend(want)
        extra = sum(pool.values())
        if extra:
            duplicated += extra
            dup_examples.append(f"{psid}: {extra} extra")
        got = received.get(psid, [])
        if sorted(got) == sorted(expected_sequence) and got != expected_sequence:
            out_of_order += 1
    return {
        "lost": sum(lost.values()),
        "lost_reasons": dict(lost),
        "lost_examples": lost_examples[:10],
        "duplicated": duplicated,
        "dup_examples": dup_examples[:10],
        "users_out_of_order": out_of_order,
        "resent_without_echo": resent_without_echo,
        "given_up": given_up,
        "received_bodies": sum(len(v) for v in received.values()),
        "expected_bodies": sum(len(v) for v in parts.values()),
    }


def post_odd_batches(port: int, *, count: int, over_s: float, batches: list, refused: list) -> threading.Thread:
    """Post ``count`` odd batches spread over ``over_s`` seconds (in the background).

    Each batch has two users of its own (so "answered exactly once" is one row and its reply per
    user), one odd item and NUL or a lone surrogate in the texts; a refused POST is redelivered.
    """
    run = uuid.uuid4().hex[:6]

    def run_batches() -> None:
        poster = webhooks.Poster(port, secret=common.APP_SECRET, timeout=15)
        for n in range(count):
            time.sleep(over_s / max(count, 1))
            users = [f"9{int(run, 16) % 10**5:05d}{n:05d}{j}" for j in range(2)]
            texts = [(users[0], f"m_odd_{run}_{n}_0", f"hello \x00 there #{n}"),
                     (users[1], f"m_odd_{run}_{n}_1", f"what are your opening hours \ud800? #{n}")]
            batch = webhooks.odd_batch(texts, n=n, odd_entry=n % 3 == 0)
            body = webhooks.encode(batch.body)
            for attempt in range(10):
                if poster.post(body) == 200:
                    batches.append(batch)
                    break
                time.sleep(0.5 * (attempt + 1))
            else:
                refused.append(f"odd batch {n}")
        poster.close()

    thread = threading.Thread(target=run_batches, name="odd-batches", daemon=True)
    thread.start()
    return thread


def check_odd_batches(db: Db, fake: FakeGraph, batches: list, *, planned: int) -> dict:
    """Every text message of an odd batch answered exactly once, every odd item kept as unreadable;
    the two messages of each of the ``planned`` batches the webhook never accepted count as lost."""
    rows = {mid: (rid, status) for rid, mid, status in db.rows(
        "SELECT id, mid, status FROM messenger_inboundmessage")}
    parts: dict[int, list[str]] = defaultdict(list)
    for inbound_id, body in db.rows(
        "SELECT inbound_id, body FROM messenger_outboundpart ORDER BY inbound_id, position"
    ):
        parts[inbound_id].append(json.dumps(body, sort_keys=True))
    received = {psid: Counter(bodies) for psid, bodies in received_bodies(fake)[0].items()}
    lost = 2 * (planned - len(batches))
    duplicated = odd_lost = messages = odd_items = 0
    for batch in batches:
        for psid, mid in batch.messages:
            messages += 1
            rid, status = rows.get(mid, (None, "missing"))
            want = Counter(parts.get(rid, []))
            got = received.get(psid, Counter())
            if status != "answered" or not want or want - got:
                lost += 1
            duplicated += sum((got - want).values())
        for mid in batch.unreadable_mids:
            odd_items += 1
            odd_lost += rows.get(mid, (None, "missing"))[1] != "unreadable"
    return {"messages": messages, "odd_items": odd_items, "lost": lost, "duplicated": duplicated,
            "odd_lost": odd_lost}


# --- issue 13: the delivery faults (a late Graph and its echoes, SIGTERM mid-send, SIGSTOP past the
# lease, poison messages) and the ``blocked`` count. Kept apart from the faults above for the merge.


def plan_delivery_faults(args, rng: random.Random, load_s: float, users: list[str]) -> dict:
    """When the fake Graph accepts sends but answers late, when a worker gets SIGTERM during that
    stretch, when one is paused (SIGSTOP) past its lease and resumed, and which users are poisoned
    (their first message can never be sent)."""
    # After the 5xx and hang stretches and the Redis restart, so the SIGTERM finds a worker at work.
    # As long as the 5xx stretch: a shorter one could pass while both workers are stopped or killed.
    late_from = 0.72 * load_s
    late_to = late_from + args.fault_seconds
    lease_s = SOAK_SETTINGS["MESSENGER_LEASE_SECONDS"]
    return {
        "late": (late_from, late_to),
        "sigterm": (rng.uniform(late_from, late_to), rng.randrange(args.workers)),
        "sigstop": (rng.uniform(0.3 * load_s, 0.8 * load_s), rng.randrange(args.workers), lease_s + 2.0),
        "poison_users": rng.sample(users, min(len(users), args.poison)),
    }


def delivery_events(faults: dict) -> list[tuple[float, tuple]]:
    late_from, late_to = faults["late"]
    at, slot = faults["sigterm"]
    stop_at, stop_slot, stop_for = faults["sigstop"]
    return [
        (late_from, ("mode", "late")),
        (late_to, ("mode", "ok")),
        (at, ("sigterm", slot)),
        (stop_at, ("sigstop", stop_slot, stop_for)),
    ]


def run_delivery_event(what: tuple, at: float, fake: FakeGraph, workers: Workers) -> None:
    if what[0] == "mode":
        fake.set_mode(what[1])
        detail = " (accepts sends, answers after the client's timeout)" if what[1] == "late" else ""
        common.log(f"t={at:.1f}s fake Graph: {what[1]}{detail}")
    elif what[0] == "sigterm":
        common.log(f"t={at:.1f}s SIGTERM worker slot {what[1] + 1} (a graceful stop, maybe mid-send)")
        workers.signal(what[1], signal.SIGTERM)
    else:
        _, slot, pause = what
        common.log(f"t={at:.1f}s SIGSTOP worker slot {slot + 1} for {pause:.1f} s (past its lease), then SIGCONT")
        stopped = workers.signal(slot, signal.SIGSTOP)
        threading.Timer(pause, workers.resume, args=(stopped,)).start()


def poison(fake: FakeGraph, users: list[str]) -> None:
    """Each poison user's first message is refused with an error in no table, until it gives up."""
    for psid in users:
        fake.refuse_psids[psid] = POISON_ERROR
        fake.refuse_left[psid] = POISON_REFUSALS


def poison_mids(messages, users: list[str]) -> frozenset:
    firsts = {psid: mid for psid, mid, _text, k in messages if k == 0}
    return frozenset(firsts[psid] for psid in users if psid in firsts)


def count_blocked(db: Db, fake: FakeGraph, messages, users: list[str], bound_s: float) -> tuple[int, list[str]]:
    """``blocked``: a poison user's later message not answered, or answered more than ``bound_s``
    after the poison's first refusal and after it was kept: the poison held its sender for longer
    than its give-up bound."""
    rows = {
        mid: (status, finished, received)
        for mid, status, finished, received in db.rows(
            "SELECT mid, status, finished_at, received_at FROM messenger_inboundmessage"
        )
    }
    blocked, examples = 0, []
    for psid, mid, _text, k in messages:
        if psid not in users or k == 0:
            continue
        status, finished, received = rows.get(mid, (None, None, None))
        if status != "answered" or finished is None:
            blocked += 1
            examples.append(f"{mid} ({status})")
            continue
        held_from = max(received.timestamp(), fake.first_refused_at.get(psid, received.timestamp()))
        if finished.timestamp() - held_from > bound_s:
            blocked += 1
            examples.append(f"{mid} (answered {finished.timestamp() - held_from:.0f} s late)")
    return blocked, examples[:10]


def count_log_events(paths: list[Path], names: list[str]) -> Counter:
    counts: Counter = Counter()
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in names) + r")\b")
    for path in paths:
        try:
            with open(path, errors="replace") as fh:
                for line in fh:
                    m = pattern.search(line)
                    if m:
                        counts[m.group(1)] += 1
        except OSError:
            continue
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI form: 300 messages from 60 users")
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--users", type=int, default=None)
    parser.add_argument("--rate", type=float, default=None, help="webhooks per second")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kills", type=int, default=None, help="worker SIGKILLs (default 3 quick, 8 long)")
    parser.add_argument("--fault-seconds", type=float, default=None, help="length of the Send API failure")
    parser.add_argument("--odd-batches", type=int, default=None,
                        help="bodies mixing messages with unreadable items and NUL (default 20 quick, 60 long)")
    parser.add_argument("--poison", type=int, default=3, help="users whose first reply can never be sent")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--redis-port", type=int, default=6390)
    parser.add_argument("--settle", type=float, default=None, help="longest wait for every row to be final (s)")
    args = parser.parse_args()
    args.messages = args.messages or (300 if args.quick else 2000)
    args.users = args.users or (60 if args.quick else 250)
    args.rate = args.rate or (10.0 if args.quick else 16.0)
    args.kills = args.kills if args.kills is not None else (3 if args.quick else 8)
    args.fault_seconds = args.fault_seconds or (8.0 if args.quick else 20.0)
    # Long enough for a poison message to give up (about a minute from its first own failure) once
    # the faults of the run have delayed its first try.
    settle = args.settle or (130.0 if args.quick else 150.0)
    args.odd_batches = args.odd_batches if args.odd_batches is not None else (20 if args.quick else 60)

    processes.install_cleanup()
    if not port_free(args.redis_port):
        print(f"port {args.redis_port} is in use: pass --redis-port", file=sys.stderr)
        return 2
    for old in common.LOG_DIR.glob("soak-*.log"):
        old.unlink()
    began = time.monotonic()
    rng = random.Random(args.seed)
    messages, faults = plan(args, rng)
    soak_users = sorted({psid for psid, _mid, _text, _k in messages})
    delivery = plan_delivery_faults(args, rng, args.messages / args.rate, soak_users)

    redis_server = RedisServer(args.redis_port)
    redis_server.start()
    redis_url = f"redis://127.0.0.1:{args.redis_port}/7"
    fake = FakeGraph().start()
    fake.hang_s = SOAK_SETTINGS["MESSENGER_SEND_TIMEOUT_MS"] / 1000 + 0.7
    env = common.project_env(
        db_url="", redis=redis_url, MESSENGER_PAGE_ACCESS_TOKEN=common.PAGE_TOKEN,
        MESSENGER_GRAPH_API_URL=fake.base_url, LOG_LEVEL="INFO", **SOAK_SETTINGS,
    )
    db_url = common.prepare_database("soak", env)
    env["DATABASE_URL"] = db_url
    db = Db(db_url)
    gunicorn, port = processes.start_gunicorn(env, log_dir=common.LOG_DIR, name="soak-gunicorn")
    fake.echo_to(f"http://127.0.0.1:{port}{webhooks.WEBHOOK_PATH}", common.APP_SECRET,
                 delay_s=ECHO_DELAY_S, drop_rate=ECHO_DROP_RATE)
    poison(fake, delivery["poison_users"])
    workers = Workers(env, args.workers)
    workers.start()
    common.log(
        f"soak: {args.messages} messages from {args.users} users at {args.rate:.0f}/s, {args.workers} workers, "
        f"seed {args.seed}; 5xx {faults['5xx'][0]:.0f}-{faults['5xx'][1]:.0f} s, hang {faults['hang'][0]:.0f}-"
        f"{faults['hang'][1]:.0f} s, Redis restart at {faults['redis_restart']:.0f} s, "
        f"kills at {[round(k[0]) for k in faults['kills']]} s"
    )

    posted: dict[str, int] = {}
    refused: list[str] = []
    t0 = time.monotonic()
    poster = post_all(port, messages, args.rate, posted, refused)
    odd_batches: list = []
    odd_poster = post_odd_batches(port, count=args.odd_batches, over_s=args.messages / args.rate,
                                  batches=odd_batches, refused=refused)
    events = [(faults["5xx"][0], "5xx"), (faults["hang"][0], "hang"), (faults["hang"][1], "ok"),
              (faults["redis_restart"], "redis")]
    events += [(at, ("kill", slot, pause)) for at, slot, pause in faults["kills"]]
    events += delivery_events(delivery)
    events.sort(key=lambda e: e[0])
    for at, what in events:
        delay = t0 + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if isinstance(what, tuple) and what[0] in ("mode", "sigterm", "sigstop"):
            run_delivery_event(what, at, fake, workers)
        elif what in ("5xx", "hang", "ok"):
            fake.set_mode(what)
            common.log(f"t={at:.1f}s fake Graph: {what}")
        elif what == "redis":
            common.log(f"t={at:.1f}s Redis: SIGKILL and restart (empty)")
            redis_server.kill()
            time.sleep(1.0)
            redis_server.start()
        else:
            _, slot, pause = what
            common.log(f"t={at:.1f}s SIGKILL worker slot {slot + 1}; back in {pause:.1f} s")
            workers.sigkill(slot, pause)
    fake.set_mode("ok")
    poster.join(timeout=600)
    odd_poster.join(timeout=600)
    load_done = time.monotonic()
    common.log(f"all {len(posted)} webhooks accepted ({len(refused)} refused); waiting for every row to be final")

    deadline = time.monotonic() + settle
    open_rows = db.open_count()
    while time.monotonic() < deadline:
        open_rows = db.open_count()
        total = int(db.scalar("SELECT count(*) FROM messenger_inboundmessage") or 0)
        if open_rows == 0 and total >= len(posted) + 3 * len(odd_batches):
            break
        time.sleep(0.5)
    settled_s = time.monotonic() - load_done
    time.sleep(1.0)  # a send answered just now is recorded by the fake before its row turns final
    workers.stop()
    processes.stop_process(gunicorn)

    result = compare(db, fake, messages, posted, poison_mids(messages, delivery["poison_users"]))
    blocked, blocked_examples = count_blocked(db, fake, messages, delivery["poison_users"], BLOCKED_BOUND_S)
    odd = check_odd_batches(db, fake, odd_batches, planned=args.odd_batches)
    result["lost"] += odd["lost"]
    result["duplicated"] += odd["duplicated"]
    statuses = db.status_counts()
    attempts = db.rows("SELECT attempts, count(*) FROM messenger_inboundmessage GROUP BY attempts ORDER BY 1")
    event_counts = dict(db.rows("SELECT event_type, count(*) FROM observability_event GROUP BY event_type"))
    requeued_rows = int(db.scalar(
        "SELECT count(*) FROM messenger_inboundmessage WHERE job_id <> ''"
    ) or 0)
    logs = count_log_events(
        [*workers.log_paths(), common.LOG_DIR / "soak-gunicorn.log"],
        ["messenger.inbox.requeued", "messenger.worker.recovered", "messenger.send.retry",
         "messenger.send.deferred", "messenger.pipeline.deferred", "messenger.inbox.enqueue-failed",
         "messenger.worker.put-back", "messenger.ordering.lock-lost", "messenger.pipeline.left-to-holder",
         "messenger.pipeline.crashed", "messenger.circuit.opened", "messenger.echoes.settled",
         "messenger.pipeline.resend-after-echo-wait", "messenger.pipeline.lease-lost",
         "messenger.pipeline.fenced-off"],
    )
    db.close()
    fake.stop()
    redis_server.kill()

    print(f"\nSoak: {args.messages} messages, {args.users} users, {args.workers} workers, seed {args.seed}; "
          f"load {load_done - t0:.0f} s, settled {settled_s:.0f} s after ({open_rows} rows still open)")
    common.print_table(["what", "count"], [
        ["webhooks accepted", len(posted)],
        ["webhooks redelivered (no 200 at first)", sum(1 for v in posted.values() if v > 1)],
        ["webhooks never accepted", len(refused)],
        ["fake Graph: messages accepted", fake.counters.ok],
        ["fake Graph: sender actions accepted", fake.counters.sender_actions],
        ["fake Graph: HTTP 500 answered", fake.counters.errors_5xx],
        ["fake Graph: hung past the timeout", fake.counters.hangs],
        ["workers SIGKILLed", workers.killed],
        ["workers that exited on their own", workers.exited_on_their_own],
        ["Redis restarts", redis_server.starts - 1],
        ["rows with more than one attempt (retried)", sum(c for a, c in attempts if a > 1)],
        ["rows given a fresh job (deferred or requeued)", requeued_rows],
        ["deferred (message_deferred events)", event_counts.get("message_deferred", 0)],
        ["send retries (messenger.send.retry)", logs["messenger.send.retry"]],
        ["circuit opened", logs["messenger.circuit.opened"]],
        ["enqueue failed at the webhook (row left pending)", logs["messenger.inbox.enqueue-failed"]],
        ["requeued by the recovery sweep", logs["messenger.inbox.requeued"]],
        ["put back by a stopping worker", logs["messenger.worker.put-back"]],
        ["sender lock lost", logs["messenger.ordering.lock-lost"]],
        ["pipeline crashed (row failed)", logs["messenger.pipeline.crashed"]],
        ["expected reply bodies (inbox parts)", result["expected_bodies"]],
        ["reply bodies received by the fake", result["received_bodies"]],
        ["users whose replies came out of order", result["users_out_of_order"]],
        ["fake Graph: accepted but answered late", fake.counters.late],
        ["fake Graph: echoes posted / dropped", f"{fake.counters.echoes_sent} / {fake.counters.echoes_dropped}"],
        ["parts re-sent after the echo wait, echo dropped (at least once)", result["resent_without_echo"]],
        ["fake Graph: poison sends refused", fake.counters.refused],
        ["poison messages given up", result["given_up"]],
        ["echo-settled parts (messenger.echoes.settled)", logs["messenger.echoes.settled"]],
        ["re-sent after the echo wait", logs["messenger.pipeline.resend-after-echo-wait"]],
        ["stopped before a send: lease lost or fenced off",
         logs["messenger.pipeline.lease-lost"] + logs["messenger.pipeline.fenced-off"]],
        ["odd batches posted (messages / odd items in them)",
         f"{len(odd_batches)} ({odd['messages']} / {odd['odd_items']})"],
        ["odd batches: messages lost / duplicated", f"{odd['lost']} / {odd['duplicated']}"],
        ["odd items not kept as unreadable", odd["odd_lost"]],
    ])
    print(f"final statuses: {statuses}")
    if result["lost"]:
        print(f"lost by reason: {result['lost_reasons']}; e.g. {result['lost_examples']}")
    if result["duplicated"]:
        print(f"duplicated: {result['dup_examples']}")
    if blocked:
        print(f"blocked: {blocked_examples}")
    print(f"logs: {common.LOG_DIR}/soak-*.log; total time {time.monotonic() - began:.0f} s")
    print(
        f"\nlost={result['lost']} duplicated={result['duplicated']} blocked={blocked} "
        f"messages={args.messages} users={args.users} "
        f"deferred={event_counts.get('message_deferred', 0)} retried_rows={sum(c for a, c in attempts if a > 1)} "
        f"requeued={logs['messenger.inbox.requeued']} kills={workers.killed} redis_restarts={redis_server.starts - 1} "
        f"out_of_order_users={result['users_out_of_order']} odd_batches={len(odd_batches)} "
        f"odd_lost={odd['odd_lost']} seed={args.seed}"
    )
    return 1 if result["lost"] or result["duplicated"] or blocked or odd["odd_lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
