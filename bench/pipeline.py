"""Pipeline benchmark: webhook -> rq worker -> engine -> Send API, every case side by side in one table.

Usage (from the repository root)::

    .venv/bin/python bench/pipeline.py [--quick] [--classes messenger,inprocess,threads] [--redis-db 6]
        [--model-processes 2] [--model-concurrency 64] [--model-db-pool 30] [--model-class CLASS] [--cases ABC]

Everything runs as in production: gunicorn (``chatbot.wsgi``, production settings) takes signed
webhooks; ``manage.py rqworker messenger_fast messenger_slow --with-scheduler`` answers them with the
worker class chosen through ``RQ_WORKER_CLASS`` and ``MESSENGER_WORKER_CONCURRENCY`` (as ops choose
them; ``bench.common.WORKER_CLASSES``: ``messenger`` forks a work horse per job, ``inprocess`` runs
jobs in the worker one at a time, ``threads`` runs many at once). The Send API client posts to
:class:`harness.fake_graph.FakeGraph` on 127.0.0.1 (real HTTP, a page token set); the ``openai``
engine to :class:`harness.fake_model.FakeModel`. PostgreSQL ``chatbot_bench_pipeline``, Redis db
``--redis-db`` (6), flushed at start. Every message has its own PSID, so a reply is matched to its
webhook by recipient.

One row per case:

A. the ``rules`` engine, Graph at 0 ms, ``--processes`` (2) worker processes, for each class of
   ``--classes`` (``--concurrency`` for a concurrent class, else the setting's default). On the same
   workers, in turn: a steady 20 msg/s (``--rate``) for 10 s (5 s with ``--quick``); saturation (rq
   suspended, the messages posted, rq resumed: messages answered per second between the first and the
   last reply); rq's no-op floor (as many ``os.getpid`` jobs: only rq's own per-job cost) and the ratio.
   Targets: >= 60 msg/s, ratio >= 0.35.
B. ``CHATBOT_ENGINE=openai`` against the fake model answering after ``--model-delay-ms`` (1,000), the
   Graph at ``--graph-latency-ms`` (150), saturation with ``--model-processes`` x
   ``--model-concurrency`` (2 x 64) on ``--model-class`` (default: the settings' default class), the
   workers on a pool of ``--model-db-pool`` (30) PostgreSQL connections each. Target:
   >= 50 msg/s with <= 1 GB of worker RSS in total.
C. default settings (default class and concurrency), 2 processes, a steady 20 msg/s for 15 s: p50/p95
   from the start of the webhook POST to the fake Graph's receipt of the reply's first part. Target:
   p95 < 100 ms.

Every row also gives the workers' RSS (the peak of the sum over every worker process and its
descendants, rq's work horses included, sampled every 100 ms) and the workers' CPU ms per message
(utime + stime of the same process trees, children reaped included, over the saturation run, or the
steady run for C, divided by the messages answered). Each phase has a deadline (``--timeout``, scaled
down by ``--quick``): a phase past it is reported as ``timeout`` with what it had measured, and the
next case runs. 2 cores, shared by gunicorn, the workers, PostgreSQL, Redis, the fakes and this script;
for saturation the messages are posted before rq resumes, so the load generator is idle while measured.
Closing line: ``key=value`` figures.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from harness import db, processes, redis_db, resources, stats, webhooks
from harness.fake_graph import FakeGraph
from harness.fake_model import FakeModel

NAN = float("nan")
MODEL_KEY = "bench-model-key-not-real"
RSS_LIMIT_MB = 1024


class PhaseTimeout(Exception):
    """A phase did not finish by its deadline."""


@dataclass
class Case:
    key: str  # the closing line's prefix: A_messenger, B, C
    label: str
    worker_class: str | None  # a key of common.WORKER_CLASSES; None: the settings' default
    processes: int
    concurrency: int | None  # MESSENGER_WORKER_CONCURRENCY; None: the setting's default
    steady_s: float = 0.0
    saturation: int = 0
    noop: bool = False
    graph_ms: float = 0.0
    engine_env: dict[str, str] = field(default_factory=dict)
    target: str = ""


@dataclass
class Result:
    status: str = "ok"
    rate: float = NAN
    noop_rate: float = NAN
    p50: float = NAN
    p95: float = NAN
    rss_mb: float = NAN
    cpu_ms: float = NAN
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.rate / self.noop_rate if self.noop_rate > 0 else NAN


class Bench:
    def __init__(self, args) -> None:
        import redis as redis_lib

        self.args = args
        self.redis_url = redis_db.redis_url(args.redis_db)
        self.fake = FakeGraph().start()
        self.model = FakeModel(delay_s=args.model_delay_ms / 1000, api_key=MODEL_KEY).start()
        self.env = common.project_env(
            db_url="",
            redis=self.redis_url,
            MESSENGER_PAGE_ACCESS_TOKEN=common.PAGE_TOKEN,
            MESSENGER_GRAPH_API_URL=self.fake.base_url,
            LOG_LEVEL=args.log_level,
        )
        self.db_url = common.prepare_database("pipeline", self.env)
        self.env["DATABASE_URL"] = self.db_url
        self.default_class, self.default_concurrency = common.worker_defaults(self.env)
        redis_db.flush_redis(self.redis_url)
        self.redis = redis_lib.Redis.from_url(self.redis_url)
        self.db = db.Db(self.db_url)
        self.gunicorn, self.port = processes.start_gunicorn(self.env, log_dir=common.LOG_DIR, name="pipeline-gunicorn")
        self.workers: list[processes.Proc] = []
        self.run = uuid.uuid4().hex[:8]
        self.seq = 0
        self.seq_lock = threading.Lock()

    # --- what a case runs ------------------------------------------------------------------------

    def class_label(self, case: Case) -> str:
        return case.worker_class or f"{common.class_key(self.default_class)} (default)"

    def concurrency_label(self, case: Case) -> str:
        key = case.worker_class or common.class_key(self.default_class)
        if key not in common.CONCURRENT_CLASSES:
            return f"{case.processes} x 1"
        concurrency = case.concurrency if case.concurrency is not None else self.default_concurrency
        return f"{case.processes} x {concurrency if concurrency is not None else '?'}"

    # --- helpers ---------------------------------------------------------------------------------

    def next_message(self) -> tuple[str, bytes]:
        with self.seq_lock:
            self.seq += 1
            n = self.seq
        psid = f"9{int(self.run, 16) % 10**6:06d}{n:07d}"
        text = common.TEXTS[n % len(common.TEXTS)]
        body = webhooks.encode(webhooks.text_body(text, mid=f"m_pipe_{self.run}_{n}", psid=psid))
        return psid, body

    def start_workers(self, case: Case, env: dict[str, str]) -> None:
        for i in range(case.processes):
            name = f"pipeline-{case.key}-{i + 1}"
            self.workers.append(processes.start_worker(env, name=name, rq_name=name, log_dir=common.LOG_DIR))
        processes.wait_workers(self.redis, len(self.workers), procs=self.workers, timeout=90)

    def stop_workers(self) -> None:
        for proc in self.workers:
            processes.kill_group(proc, signal.SIGTERM)
        for proc in self.workers:
            processes.stop_process(proc, timeout=20)
        self.workers = []

    def reset(self) -> None:
        """Between cases: no worker running, empty inbox, empty Redis db, empty fakes."""
        from rq.suspension import resume

        self.stop_workers()
        redis_db.flush_redis(self.redis_url)
        resume(self.redis)
        db.truncate_app_tables(self.db_url)
        self.fake.clear()

    def clear_rows(self) -> None:
        """Between the phases of a case (workers idle): forget the messages answered so far."""
        self.fake.clear()
        db.truncate_app_tables(self.db_url)
        self.model.reset_counts()

    def post_many(self, n: int, *, timeout: float, threads: int = 4) -> list[str]:
        """Post ``n`` webhooks from ``threads`` keep-alive clients; returns the PSIDs (all must get 200)."""
        psids: list[str] = []
        errors = []
        lock = threading.Lock()
        deadline = time.monotonic() + timeout
        per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]

        def client(count: int) -> None:
            poster = webhooks.Poster(self.port, secret=common.APP_SECRET)
            for _ in range(count):
                if time.monotonic() > deadline:
                    break
                psid, body = self.next_message()
                status = poster.post(body)
                with lock:
                    (psids if status == 200 else errors).append(psid)
            poster.close()

        ts = [threading.Thread(target=client, args=(c,), daemon=True) for c in per]
        for t in ts:
            t.start()
        for t in ts:
            t.join(max(0.0, deadline - time.monotonic()) + 15)
        if errors:
            raise RuntimeError(f"{len(errors)} webhooks were refused")
        if len(psids) < n:
            raise PhaseTimeout(f"posting: {len(psids)}/{n} webhooks in {timeout:.0f} s")
        return psids

    def wait_answered(self, n: int, *, timeout: float) -> bool:
        """Wait until ``n`` inbound rows exist and none is open."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            total = int(self.db.scalar("SELECT count(*) FROM messenger_inboundmessage") or 0)
            if total >= n and self.db.open_count() == 0:
                return True
            time.sleep(0.2)
        return False

    def worker_cpu(self) -> float:
        return resources.tree_cpu_seconds({w.pid for w in self.workers})

    # --- phases ----------------------------------------------------------------------------------

    def warm_up(self, n: int = 20) -> None:
        """The first jobs pay for imports, connections, thread pools: not measured."""
        self.post_many(n, timeout=self.args.timeout, threads=2)
        if not self.wait_answered(n, timeout=self.args.timeout):
            raise PhaseTimeout(f"warm-up: {self.db.status_counts()}")
        self.clear_rows()

    def steady(self, result: Result, *, rate: float, seconds: float, measure_resources: bool) -> None:
        """Webhooks at ``rate`` for ``seconds`` (open loop); p50/p95 webhook POST -> Send API receipt."""
        sent: dict[str, float] = {}
        poster = webhooks.Poster(self.port, secret=common.APP_SECRET)
        total = int(rate * seconds)
        sampler = resources.MemorySampler(lambda: list(self.workers)).__enter__() if measure_resources else None
        cpu_before = self.worker_cpu()
        start = time.perf_counter() + 0.05
        try:
            for i in range(total):
                at = start + i / rate
                now = time.perf_counter()
                if at > now:
                    time.sleep(at - now)
                psid, body = self.next_message()
                t0 = time.perf_counter()
                if poster.post(body) != 200:
                    raise RuntimeError("webhook refused a message")
                sent[psid] = t0
        finally:
            poster.close()
        ok = self.wait_answered(total, timeout=self.args.timeout)
        cpu = self.worker_cpu() - cpu_before
        first: dict[str, float] = {}
        for r in self.fake.messages():
            if r.psid in sent and r.psid not in first:
                first[r.psid] = r.at
        lat = [(first[p] - t0) * 1000 for p, t0 in sent.items() if p in first]
        result.p50, result.p95 = stats.percentile(lat, 50), stats.percentile(lat, 95)
        result.notes.append(f"steady {rate:g} msg/s for {seconds:g} s: {len(lat)}/{total} answered, "
                            f"p99 {stats.percentile(lat, 99):.1f} ms, max {max(lat, default=NAN):.1f} ms")
        if sampler:
            sampler.__exit__(None, None, None)
            result.rss_mb = sampler.peak_rss_kb / 1024
            result.cpu_ms = cpu / max(1, len(lat)) * 1000
        if not ok:
            raise PhaseTimeout(f"steady run: {len(lat)}/{total} answered; {self.db.status_counts()}")

    def saturate(self, result: Result, *, n: int) -> None:
        """rq suspended, ``n`` webhooks posted, rq resumed: answered per second, first to last reply."""
        from rq.suspension import resume, suspend

        self.clear_rows()
        suspend(self.redis)
        self.post_many(n, timeout=self.args.timeout)
        with resources.MemorySampler(lambda: list(self.workers)) as sampler:
            cpu_before = self.worker_cpu()
            resume(self.redis)
            ok = self.wait_answered(n, timeout=self.args.timeout)
            cpu = self.worker_cpu() - cpu_before
        done = sorted(r.at for r in self.fake.messages())
        answered = len({r.psid for r in self.fake.messages()})
        span = done[-1] - done[0] if len(done) > 1 else NAN
        result.rate = (len(done) - 1) / span if span > 0 else NAN
        result.rss_mb = sampler.peak_rss_kb / 1024
        result.cpu_ms = cpu / max(1, answered) * 1000
        note = (f"saturation: {answered}/{n} answered in {span:.1f} s, peak {sampler.peak_processes} worker "
                f"processes, statuses {self.db.status_counts()}")
        if self.model.requests:
            note += f"; model: {self.model.requests} calls, at most {self.model.peak_in_flight} at once"
        result.notes.append(note)
        if not ok:
            raise PhaseTimeout(f"saturation: {answered}/{n} answered")

    def noop_floor(self, result: Result, *, n: int) -> None:
        """The same workers on ``n`` no-op jobs (only rq's own per-job cost): jobs/s, first to last end."""
        from rq import Queue
        from rq.job import Job
        from rq.suspension import resume, suspend

        suspend(self.redis)
        queue = Queue("messenger_fast", connection=self.redis)
        ids = [queue.enqueue("os.getpid", result_ttl=600).id for _ in range(n)]
        resume(self.redis)
        deadline = time.monotonic() + self.args.timeout
        finished = False
        while time.monotonic() < deadline:
            if queue.count == 0 and queue.started_job_registry.count == 0:
                finished = True
                break
            time.sleep(0.2)
        time.sleep(0.5)
        jobs = [j for j in Job.fetch_many(ids, connection=self.redis) if j is not None]
        ends = sorted(j.ended_at.timestamp() for j in jobs if isinstance(j.ended_at, datetime))
        span = ends[-1] - ends[0] if len(ends) > 1 else NAN
        result.noop_rate = (len(ends) - 1) / span if span > 0 else NAN
        result.notes.append(f"no-op floor: {len(ends)}/{n} jobs in {span:.2f} s")
        if not finished:
            raise PhaseTimeout(f"no-op floor: {len(ends)}/{n} jobs")

    def run_case(self, case: Case) -> Result:
        result = Result()
        common.log(f"{case.key}: {case.label}, {self.class_label(case)}, {self.concurrency_label(case)}")
        env = {**self.env, **common.worker_class_env(case.worker_class, case.concurrency), **case.engine_env}
        self.reset()
        self.fake.latency_s = case.graph_ms / 1000
        try:
            self.start_workers(case, env)
            self.warm_up()
            if case.steady_s:
                self.steady(result, rate=self.args.rate, seconds=case.steady_s,
                            measure_resources=not case.saturation)
            if case.saturation:
                self.saturate(result, n=case.saturation)
            if case.noop:
                self.noop_floor(result, n=case.saturation)
        except PhaseTimeout as exc:
            result.status = "timeout"
            result.notes.append(f"timeout: {exc}")
        except Exception as exc:  # one broken case (a class that is missing) must not end the run
            result.status = "error"
            result.notes.append(f"error: {type(exc).__name__}: {exc}")
        finally:
            self.stop_workers()
            self.fake.latency_s = 0.0
        return result

    def close(self) -> None:
        self.stop_workers()
        processes.stop_process(self.gunicorn)
        self.fake.stop()
        self.model.stop()
        self.db.close()


def verdict(case: Case, result: Result) -> str:
    """Whether ``result`` meets the case's target: yes / no (a timeout is a no) / ``-`` (an error)."""
    if result.status == "error":
        return "-"
    if case.key.startswith("A"):
        checks = [result.rate >= 60, result.ratio >= 0.35]
    elif case.key == "B":
        checks = [result.rate >= 50, result.rss_mb <= RSS_LIMIT_MB]
    else:
        checks = [result.p95 < 100]
    return "yes" if result.status == "ok" and all(checks) else "no"


def build_cases(args, *, model_url: str) -> list[Case]:
    quick = args.quick
    n = args.messages or (150 if quick else 500)
    cases = []
    if "A" in args.cases:
        for key in args.classes:
            cases.append(Case(
                key=f"A_{key}", label="A rules, Graph 0 ms", worker_class=key, processes=args.processes,
                concurrency=args.concurrency if key in common.CONCURRENT_CLASSES else None,
                steady_s=5.0 if quick else 10.0, saturation=n, noop=True,
                target=">= 60 msg/s, ratio >= 0.35",
            ))
    if "B" in args.cases:
        cases.append(Case(
            key="B", label=f"B model {args.model_delay_ms:g} ms, Graph {args.graph_latency_ms:g} ms",
            worker_class=args.model_class, processes=args.model_processes, concurrency=args.model_concurrency,
            saturation=args.model_messages or (200 if quick else 600), graph_ms=args.graph_latency_ms,
            engine_env={"CHATBOT_ENGINE": "openai", "CHATBOT_API_URL": model_url, "CHATBOT_API_KEY": MODEL_KEY,
                        "CHATBOT_MODEL": "fake-model", "DATABASE_POOL_MAX_SIZE": str(args.model_db_pool)},
            target=f">= 50 msg/s, RSS <= {RSS_LIMIT_MB} MB",
        ))
    if "C" in args.cases:
        cases.append(Case(key="C", label=f"C steady {args.rate:g} msg/s, defaults", worker_class=None,
                          processes=2, concurrency=None, steady_s=15.0, target="p95 < 100 ms"))
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages, shorter runs and deadlines (<= 6 min)")
    parser.add_argument("--cases", default="ABC", help="cases to run (default ABC)")
    parser.add_argument("--classes", default="messenger,inprocess,threads",
                        help=f"worker classes of case A, comma-separated, of {sorted(common.WORKER_CLASSES)}")
    parser.add_argument("--processes", type=int, default=2, help="worker processes of case A (default 2)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="MESSENGER_WORKER_CONCURRENCY of a concurrent class in case A (default: the setting's)")
    parser.add_argument("--messages", type=int, default=None, help="messages per saturation run of A (500; quick 150)")
    parser.add_argument("--rate", type=float, default=20.0, help="steady rate, msg/s (default 20)")
    parser.add_argument("--model-class", choices=sorted(common.WORKER_CLASSES), default=None,
                        help="worker class of case B (default: the settings' default)")
    parser.add_argument("--model-processes", type=int, default=2)
    parser.add_argument("--model-concurrency", type=int, default=64)
    parser.add_argument("--model-db-pool", type=int, default=30,
                        help="DATABASE_POOL_MAX_SIZE of case B's workers (0: a connection per thread)")
    parser.add_argument("--model-messages", type=int, default=None, help="messages of case B (600; quick 200)")
    parser.add_argument("--model-delay-ms", type=float, default=1000.0)
    parser.add_argument("--graph-latency-ms", type=float, default=150.0, help="the fake Graph's latency in case B")
    parser.add_argument("--timeout", type=float, default=None, help="deadline of each phase, s (180; quick 60)")
    parser.add_argument("--redis-db", type=int, default=6)
    parser.add_argument("--log-level", default="WARNING", help="the project's LOG_LEVEL (default WARNING)")
    args = parser.parse_args()
    args.classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    unknown = [c for c in args.classes if c not in common.WORKER_CLASSES]
    if unknown:
        parser.error(f"unknown worker class {unknown}; known: {sorted(common.WORKER_CLASSES)}")
    args.timeout = args.timeout or (60.0 if args.quick else 180.0)

    processes.install_cleanup()
    started = time.monotonic()
    loadavg = Path("/proc/loadavg").read_text().split()[:3]
    print(f"loadavg at start: {loadavg}; {os.cpu_count()} cores", flush=True)
    bench = Bench(args)
    cases = build_cases(args, model_url=bench.model.base_url)
    results: list[tuple[Case, Result]] = []
    try:
        for case in cases:
            results.append((case, bench.run_case(case)))
    finally:
        bench.close()

    print(f"\nPipeline cases, {'--quick, ' if args.quick else ''}default worker class "
          f"{bench.default_class}, default concurrency {bench.default_concurrency}; "
          "RSS: peak of the workers' trees; CPU: the workers' trees per message answered")
    rows, figures = [], {}
    for case, r in results:
        met = verdict(case, r)
        rows.append([case.label, bench.class_label(case), bench.concurrency_label(case), r.rate, r.noop_rate,
                     r.ratio, r.p50, r.p95, r.rss_mb, r.cpu_ms, case.target, met, r.status])
        for name, value in (("msgs_per_s", r.rate), ("noop_jobs_per_s", r.noop_rate), ("ratio", r.ratio),
                            ("p50_ms", r.p50), ("p95_ms", r.p95), ("rss_mb", r.rss_mb), ("cpu_ms_per_msg", r.cpu_ms)):
            if not math.isnan(value):
                figures[f"{case.key}_{name}"] = f"{value:.2f}" if name == "ratio" else f"{value:.1f}"
        figures[f"{case.key}_class"] = common.class_key(common.WORKER_CLASSES.get(case.worker_class or "", "")
                                                        or bench.default_class)
        figures[f"{case.key}_procs_x_conc"] = bench.concurrency_label(case).replace(" ", "")
        figures[f"{case.key}_status"] = r.status
        figures[f"{case.key}_met"] = met
    common.print_table(["case", "worker class", "procs x conc", "msgs/s", "noop jobs/s", "ratio", "p50 ms",
                        "p95 ms", "RSS MB", "CPU ms/msg", "target", "met", "status"], rows)
    print()
    for case, r in results:
        for note in r.notes:
            print(f"{case.key}: {note}")
    figures["loadavg_start"] = loadavg[0]
    figures["duration_s"] = f"{time.monotonic() - started:.0f}"
    print("\n" + " ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
