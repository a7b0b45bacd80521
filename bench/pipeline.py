"""Pipeline benchmark: webhook -> rq worker -> rules engine -> Send API, against a fake Graph API on loopback.

Usage (from the repository root)::

    .venv/bin/python bench/pipeline.py [--quick] [--messages 600] [--graph-workers 12]

Everything runs as in production: gunicorn (``chatbot.wsgi``, production settings) takes signed
webhooks; ``manage.py rqworker messenger_fast messenger_slow --with-scheduler`` (``--worker-class messenger``:
the default ``MessengerWorker``, fork per job; ``inprocess``: ``MessengerInProcessWorker``, selected
with ``RQ_WORKER_CLASS`` as ops would) answers them with the ``rules`` engine; the Send API client posts
to :class:`harness.fake_graph.FakeGraph` on 127.0.0.1 with a page token set (real HTTP, circuit breaker on
Redis). PostgreSQL ``chatbot_bench_pipeline``, Redis db ``--redis-db`` (6), flushed at start.
Every message has its own PSID, so a reply is matched to its webhook by recipient.

(a) Latency: ``--latency-workers`` workers; webhooks at a steady 20 msg/s for 15 s (open loop); the
    time from the start of the webhook POST to the fake Graph's receipt of the reply's first part.
(b) Saturation: rq suspended, 1 (then 2) workers started, ``--messages`` webhooks posted; rq resumed;
    throughput = messages answered per second between the first and the last reply.
(c) The floor: the same with no-op jobs (``os.getpid``: already imported, so only rq's own per-job
    cost is measured: fork, Redis bookkeeping) on the same worker class and
    counts, measured between the first and last job end; the ratio (b)/(c).
(d) The fake Graph at 150 ms per call: throughput and peak memory (RSS and PSS summed over the
    worker processes, their work horses and scheduler) with ``--graph-workers`` workers.

2 cores, shared by gunicorn, the workers, PostgreSQL, Redis, the fake Graph and this script.
Closing line: ``key=value`` figures.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from harness import db, processes, redis_db, resources, stats, webhooks
from harness.fake_graph import FakeGraph


class Bench:
    def __init__(self, args) -> None:
        import redis as redis_lib

        self.args = args
        self.redis_url = redis_db.redis_url(args.redis_db)
        self.fake = FakeGraph().start()
        self.env = common.project_env(
            db_url="",
            redis=self.redis_url,
            MESSENGER_PAGE_ACCESS_TOKEN=common.PAGE_TOKEN,
            MESSENGER_GRAPH_API_URL=self.fake.base_url,
            LOG_LEVEL=args.log_level,
            **common.worker_class_env(args.worker_class),
        )
        self.db_url = common.prepare_database("pipeline", self.env)
        self.env["DATABASE_URL"] = self.db_url
        redis_db.flush_redis(self.redis_url)
        self.redis = redis_lib.Redis.from_url(self.redis_url)
        self.db = db.Db(self.db_url)
        self.gunicorn, self.port = processes.start_gunicorn(self.env, log_dir=common.LOG_DIR, name="pipeline-gunicorn")
        self.workers: list[processes.Proc] = []
        self.run = uuid.uuid4().hex[:8]
        self.seq = 0
        self.seq_lock = threading.Lock()

    # --- helpers ---------------------------------------------------------------------------------

    def next_message(self) -> tuple[str, bytes]:
        with self.seq_lock:
            self.seq += 1
            n = self.seq
        psid = f"9{int(self.run, 16) % 10**6:06d}{n:07d}"
        text = common.TEXTS[n % len(common.TEXTS)]
        body = webhooks.encode(webhooks.text_body(text, mid=f"m_pipe_{self.run}_{n}", psid=psid))
        return psid, body

    def start_workers(self, count: int, *, tag: str) -> None:
        for i in range(count):
            name = f"pipeline-{tag}-{i + 1}"
            self.workers.append(processes.start_worker(self.env, name=name, rq_name=name, log_dir=common.LOG_DIR))
        processes.wait_workers(self.redis, len(self.workers), procs=self.workers, timeout=60)

    def stop_workers(self) -> None:
        for proc in self.workers:
            processes.kill_group(proc, signal.SIGTERM)
        for proc in self.workers:
            processes.stop_process(proc, timeout=15)
        self.workers = []

    def reset(self) -> None:
        """Between phases: no worker running, empty inbox, empty Redis db, empty fake."""
        self.stop_workers()
        redis_db.flush_redis(self.redis_url)
        db.truncate_app_tables(self.db_url)
        self.fake.clear()

    def post_many(self, n: int, *, threads: int = 4) -> list[str]:
        """Post ``n`` webhooks from ``threads`` keep-alive clients; returns the PSIDs (all must get 200)."""
        psids: list[str] = []
        errors = []
        lock = threading.Lock()
        per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]

        def client(count: int) -> None:
            poster = webhooks.Poster(self.port, secret=common.APP_SECRET)
            for _ in range(count):
                psid, body = self.next_message()
                status = poster.post(body)
                with lock:
                    (psids if status == 200 else errors).append(psid)
            poster.close()

        ts = [threading.Thread(target=client, args=(c,)) for c in per]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errors:
            raise RuntimeError(f"{len(errors)} webhooks were refused")
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

    def completions(self) -> dict[str, float]:
        """perf_counter time of the last reply part each PSID received."""
        done: dict[str, float] = {}
        for r in self.fake.messages():
            done[r.psid] = max(done.get(r.psid, 0.0), r.at)
        return done

    # --- phases ----------------------------------------------------------------------------------

    def latency(self, *, rate: float, seconds: float, workers: int) -> dict:
        self.reset()
        self.start_workers(workers, tag="lat")
        # Warm-up: the first jobs pay for imports in the horses' parent caches, connections, etc.
        self.post_many(20, threads=2)
        self.wait_answered(20, timeout=60)
        self.fake.clear()
        db.truncate_app_tables(self.db_url)

        sent: dict[str, float] = {}
        poster = webhooks.Poster(self.port, secret=common.APP_SECRET)
        total = int(rate * seconds)
        start = time.perf_counter() + 0.05
        cpu_groups = {"workers": [w.pid for w in self.workers], "gunicorn": [self.gunicorn.pid]}
        cpu_before = resources.cpu_snapshot(cpu_groups)
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
        poster.close()
        ok = self.wait_answered(total, timeout=60)
        cpu = resources.cpu_delta(cpu_before, resources.cpu_snapshot(cpu_groups))
        first: dict[str, float] = {}
        for r in self.fake.messages():
            if r.psid in sent and r.psid not in first:
                first[r.psid] = r.at
        lat = [(first[p] - t0) * 1000 for p, t0 in sent.items() if p in first]
        return {
            "messages": total,
            "answered": len(lat),
            "complete": ok,
            "p50": stats.percentile(lat, 50),
            "p95": stats.percentile(lat, 95),
            "p99": stats.percentile(lat, 99),
            "max": max(lat) if lat else float("nan"),
            "cpu": cpu,
            "statuses": self.db.status_counts(),
        }

    def saturation(self, *, n: int, workers: int, tag: str, sample_memory: bool = False) -> dict:
        from rq.suspension import resume, suspend

        self.reset()
        suspend(self.redis)
        self.start_workers(workers, tag=tag)
        self.post_many(n)
        sampler = resources.MemorySampler(lambda: list(self.workers)) if sample_memory else None
        if sampler:
            sampler.__enter__()
        cpu_groups = {"workers": [w.pid for w in self.workers], "gunicorn": [self.gunicorn.pid]}
        cpu_before = resources.cpu_snapshot(cpu_groups)
        resume(self.redis)
        ok = self.wait_answered(n, timeout=max(120.0, n / 2))
        cpu = resources.cpu_delta(cpu_before, resources.cpu_snapshot(cpu_groups))
        if sampler:
            sampler.__exit__(None, None, None)
        done = sorted(self.completions().values())
        span = done[-1] - done[0] if len(done) > 1 else float("nan")
        result = {
            "messages": n,
            "workers": workers,
            "answered": len(done),
            "complete": ok,
            "span_s": span,
            "rate": (len(done) - 1) / span if len(done) > 1 and span > 0 else float("nan"),
            "cpu": cpu,
            "statuses": self.db.status_counts(),
        }
        if sampler:
            result["peak_rss_mb"] = sampler.peak_rss_kb / 1024
            result["peak_pss_mb"] = sampler.peak_pss_kb / 1024
            result["peak_processes"] = sampler.peak_processes
        return result

    def noop_floor(self, *, n: int, workers: int) -> dict:
        from rq import Queue
        from rq.job import Job
        from rq.suspension import resume, suspend

        self.reset()
        suspend(self.redis)
        self.start_workers(workers, tag="noop")
        queue = Queue("messenger_fast", connection=self.redis)
        ids = [queue.enqueue("os.getpid", result_ttl=600).id for _ in range(n)]
        resume(self.redis)
        deadline = time.monotonic() + max(120.0, n / 2)
        while time.monotonic() < deadline:
            if queue.count == 0 and queue.started_job_registry.count == 0:
                break
            time.sleep(0.2)
        time.sleep(0.5)
        jobs = [j for j in Job.fetch_many(ids, connection=self.redis) if j is not None]
        ends = sorted(j.ended_at.timestamp() for j in jobs if isinstance(j.ended_at, datetime))
        span = ends[-1] - ends[0] if len(ends) > 1 else float("nan")
        return {
            "jobs": n,
            "finished": len(ends),
            "span_s": span,
            "rate": (len(ends) - 1) / span if len(ends) > 1 and span > 0 else float("nan"),
        }

    def close(self) -> None:
        self.stop_workers()
        processes.stop_process(self.gunicorn)
        self.fake.stop()
        self.db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages, shorter latency run")
    parser.add_argument("--messages", type=int, default=None, help="messages per saturation run (default 500)")
    parser.add_argument("--latency-workers", type=int, default=2, help="workers for the latency run (default 2)")
    parser.add_argument("--graph-workers", type=int, default=12,
                        help="workers for the 150 ms Graph run (default 12, the README's recommendation)")
    parser.add_argument("--graph-latency-ms", type=float, default=150.0)
    parser.add_argument("--redis-db", type=int, default=6)
    parser.add_argument("--log-level", default="WARNING", help="the project's LOG_LEVEL (default WARNING)")
    parser.add_argument("--only", default="abcd", help="phases to run (default abcd)")
    parser.add_argument("--worker-class", choices=sorted(common.WORKER_CLASSES), default="messenger",
                        help="messenger: MessengerWorker, fork per job (the default); inprocess: "
                             "MessengerInProcessWorker, jobs in the worker process (RQ_WORKER_CLASS)")
    args = parser.parse_args()
    n = args.messages or (150 if args.quick else 500)
    latency_seconds = 6.0 if args.quick else 15.0

    processes.install_cleanup()
    print(f"loadavg at start: {Path('/proc/loadavg').read_text().split()[:3]}; {os.cpu_count()} cores; "
          f"worker class: {common.WORKER_CLASSES[args.worker_class]}",
          flush=True)
    bench = Bench(args)
    figures: dict[str, str] = {}
    try:
        if "a" in args.only:
            common.log(f"(a) latency at 20 msg/s for {latency_seconds:.0f} s, {args.latency_workers} workers")
            lat = bench.latency(rate=20, seconds=latency_seconds, workers=args.latency_workers)
            print(f"\n(a) Webhook POST -> Send API receipt at 20 msg/s, {latency_seconds:.0f} s, "
                  f"{args.latency_workers} workers; statuses {lat['statuses']}")
            common.print_table(
                ["messages", "answered", "p50 ms", "p95 ms", "p99 ms", "max ms", "worker cpu %", "gunicorn cpu %"],
                [[lat["messages"], lat["answered"], lat["p50"], lat["p95"], lat["p99"], lat["max"],
                  lat["cpu"]["workers"] / latency_seconds * 100, lat["cpu"]["gunicorn"] / latency_seconds * 100]],
            )
            figures.update(latency_p50_ms=f"{lat['p50']:.1f}", latency_p95_ms=f"{lat['p95']:.1f}",
                           latency_p99_ms=f"{lat['p99']:.1f}")

        rows = []
        if "b" in args.only or "c" in args.only:
            for workers in (1, 2):
                sat = noop = None
                if "b" in args.only:
                    common.log(f"(b) saturation: {n} messages, {workers} worker(s)")
                    sat = bench.saturation(n=n, workers=workers, tag=f"sat{workers}")
                if "c" in args.only:
                    common.log(f"(c) no-op floor: {n} jobs, {workers} worker(s)")
                    noop = bench.noop_floor(n=n, workers=workers)
                rows.append([
                    workers,
                    sat["answered"] if sat else "-",
                    sat["rate"] if sat else float("nan"),
                    noop["rate"] if noop else float("nan"),
                    f"{sat['rate'] / noop['rate'] * 100:.0f}%" if sat and noop else "-",
                    (sat["cpu"]["workers"] + sat["cpu"]["postgres"] + sat["cpu"]["redis-server"]
                     + sat["cpu"]["bench"]) / max(1, sat["answered"]) * 1000 if sat else float("nan"),
                    sat["cpu"]["workers"] / max(1, sat["answered"]) * 1000 if sat else float("nan"),
                    sat["cpu"]["postgres"] / max(1, sat["answered"]) * 1000 if sat else float("nan"),
                ])
                if sat:
                    figures[f"msgs_per_s_{workers}w"] = f"{sat['rate']:.1f}"
                    if not sat["complete"]:
                        print(f"warning: saturation run with {workers} worker(s) did not finish: {sat['statuses']}")
                if noop:
                    figures[f"noop_jobs_per_s_{workers}w"] = f"{noop['rate']:.1f}"
                if sat and noop:
                    figures[f"ratio_{workers}w"] = f"{sat['rate'] / noop['rate']:.2f}"
            print(f"\n(b)/(c) Saturation, {n} messages (or no-op jobs) queued, then rq resumed; "
                  "CPU ms per message (machine total: workers+horses, postgres, redis, fake Graph)")
            common.print_table(
                ["workers", "answered", "msgs/s", "noop jobs/s", "ours/noop", "cpu ms/msg", "workers ms", "pg ms"],
                rows,
            )

        if "d" in args.only:
            bench.fake.latency_s = args.graph_latency_ms / 1000
            nd = args.messages or (200 if args.quick else 500)
            common.log(f"(d) Graph latency {args.graph_latency_ms:.0f} ms: {nd} messages, "
                       f"{args.graph_workers} workers")
            d = bench.saturation(n=nd, workers=args.graph_workers, tag="graph", sample_memory=True)
            bench.fake.latency_s = 0.0
            print(f"\n(d) Fake Graph at {args.graph_latency_ms:.0f} ms per call, {args.graph_workers} workers; "
                  f"statuses {d['statuses']}")
            common.print_table(
                ["workers", "messages", "answered", "msgs/s", "peak RSS MB", "peak PSS MB", "peak processes"],
                [[args.graph_workers, nd, d["answered"], d["rate"], d["peak_rss_mb"], d["peak_pss_mb"],
                  d["peak_processes"]]],
            )
            figures.update(graph150_msgs_per_s=f"{d['rate']:.1f}", graph150_workers=str(args.graph_workers),
                           graph150_peak_rss_mb=f"{d['peak_rss_mb']:.0f}",
                           graph150_peak_pss_mb=f"{d['peak_pss_mb']:.0f}")
    finally:
        bench.close()

    figures["worker_class"] = args.worker_class
    print("\n" + " ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
