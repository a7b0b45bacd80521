"""Ingress benchmark: the signed V2 webhook under gunicorn against a bare DRF view, same server, same run.

Usage (from the repository root)::

    .venv/bin/python bench/ingress.py [--quick] [--duration 8] [--levels 1,4,16] [--workers 2 --threads 4]

What it does:

1. Creates/migrates PostgreSQL ``chatbot_bench_ingress`` and flushes Redis db ``--redis-db`` (7) of the
   local server; starts gunicorn (``chatbot.wsgi``, production settings: ``DJANGO_DEBUG=false``,
   ``BENCH_BASELINE_ROUTE=true``) on a free loopback port. No rq worker runs: the jobs pile up in
   Redis, which is flushed (and the inbox truncated) between runs.
2. For each concurrency level, a load generator in another process (threads with keep-alive
   ``http.client`` connections, one per concurrent client) posts signed text webhooks with unique
   message ids for ``--duration`` seconds, closed loop (each client sends its next request when the
   previous one is answered); then the same against ``/bench/baseline``.
3. The second target: both routes again at a fixed rate of half the baseline's best throughput
   (open loop, 16 clients), reporting p99.

The machine has 2 cores and the load generator runs on them too: every figure is "server plus
client on 2 cores". Closing line: ``key=value`` figures.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from harness import db, processes, redis_db, resources, stats, webhooks


def _client(port: int, path: str, deadline: float, interval: float | None, start_at: float, tag: str,
            out: list, statuses: dict, lock: threading.Lock) -> None:
    """One client: closed loop (``interval`` None) or one request every ``interval`` s from ``start_at``."""
    latencies: list[float] = []
    counts: dict[int, int] = {}
    conn: http.client.HTTPConnection | None = None
    i = 0
    next_at = start_at
    while True:
        if interval is not None:
            now = time.perf_counter()
            if next_at > now:
                time.sleep(next_at - now)
            next_at += interval
        if time.perf_counter() >= deadline:
            break
        i += 1
        mid = f"m_ingress_{tag}_{i}"
        psid = f"7{abs(hash(tag)) % 10**12:012d}"
        body = webhooks.encode(webhooks.text_body("hello, what are your opening hours?", mid=mid, psid=psid))
        headers = webhooks.signed_headers(body, common.APP_SECRET)
        t0 = time.perf_counter()
        status = 0
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            if conn is not None:
                conn.close()
            conn = None
        latencies.append((time.perf_counter() - t0) * 1000)
        counts[status] = counts.get(status, 0) + 1
    if conn is not None:
        conn.close()
    with lock:
        out.extend(latencies)
        for k, v in counts.items():
            statuses[k] = statuses.get(k, 0) + v


def _loadgen(port: int, path: str, concurrency: int, duration: float, rate: float | None, run: str,
             queue) -> None:
    """The load generator process: ``concurrency`` client threads; puts (latencies, statuses, elapsed)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    start = time.perf_counter() + 0.05
    deadline = start + duration
    interval = concurrency / rate if rate else None
    threads = [
        threading.Thread(
            target=_client,
            args=(port, path, deadline, interval, start + (i * interval / concurrency if interval else 0),
                  f"{run}_{i}", latencies, statuses, lock),
        )
        for i in range(concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put((latencies, statuses, time.perf_counter() - start))


def run_load(port: int, path: str, *, concurrency: int, duration: float, rate: float | None = None,
             groups: dict[str, list[int]] | None = None) -> dict:
    """Run one load in a separate process; returns rps, percentiles, status counts and CPU seconds."""
    cpu_before = resources.cpu_snapshot(groups or {})
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(
        target=_loadgen, args=(port, path, concurrency, duration, rate, uuid.uuid4().hex[:10], queue), daemon=True
    )
    proc.start()
    latencies, statuses, elapsed = queue.get(timeout=duration + 120)
    proc.join(timeout=10)
    cpu = resources.cpu_delta(cpu_before, resources.cpu_snapshot(groups or {}))
    ok = statuses.get(200, 0)
    return {
        "requests": len(latencies),
        "ok": ok,
        "errors": len(latencies) - ok,
        "rps": ok / elapsed if elapsed else 0.0,
        "p50": stats.percentile(latencies, 50),
        "p95": stats.percentile(latencies, 95),
        "p99": stats.percentile(latencies, 99),
        "statuses": statuses,
        "cpu": cpu,
        "elapsed": elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s per run instead of 8")
    parser.add_argument("--duration", type=float, default=None, help="seconds per closed-loop run (default 8)")
    parser.add_argument("--levels", default="1,4,16", help="concurrency levels (default 1,4,16)")
    parser.add_argument("--workers", type=int, default=processes.GUNICORN_WORKERS)
    parser.add_argument("--threads", type=int, default=processes.GUNICORN_THREADS)
    parser.add_argument("--redis-db", type=int, default=7)
    parser.add_argument("--log-level", default="WARNING", help="the project's LOG_LEVEL (default WARNING)")
    args = parser.parse_args()
    duration = args.duration or (3.0 if args.quick else 8.0)
    levels = [int(x) for x in args.levels.split(",")]

    processes.install_cleanup()
    redis = redis_db.redis_url(args.redis_db)
    env = common.project_env(db_url="", redis=redis, BENCH_BASELINE_ROUTE="true", LOG_LEVEL=args.log_level)
    db_url = common.prepare_database("ingress", env)
    env["DATABASE_URL"] = db_url
    redis_db.flush_redis(redis)
    gunicorn, port = processes.start_gunicorn(env, log_dir=common.LOG_DIR, name="ingress-gunicorn",
                                              workers=args.workers, threads=args.threads)
    common.log(f"gunicorn on 127.0.0.1:{port}: {args.workers} workers x {args.threads} threads (gthread)")

    groups = {"gunicorn": [gunicorn.pid]}

    def reset() -> None:
        redis_db.flush_redis(redis)
        db.truncate_app_tables(db_url)

    # Warm-up: connections to PostgreSQL/Redis, imports, statement caches, for both routes.
    for path in (webhooks.WEBHOOK_PATH, common.BASELINE_PATH):
        run_load(port, path, concurrency=4, duration=1.5)
    reset()

    results: dict[tuple[str, int], dict] = {}
    for level in levels:
        for route, path in (("webhook", webhooks.WEBHOOK_PATH), ("baseline", common.BASELINE_PATH)):
            common.log(f"{route} c={level} for {duration:.0f} s")
            results[(route, level)] = run_load(port, path, concurrency=level, duration=duration, groups=groups)
            reset()

    rows = []
    for level in levels:
        ours, base = results[("webhook", level)], results[("baseline", level)]
        for route, r in (("webhook", ours), ("baseline", base)):
            rows.append([route, level, r["requests"], r["errors"], r["rps"], r["p50"], r["p95"], r["p99"],
                         f"{ours['rps'] / base['rps'] * 100:.0f}%" if route == "webhook" and base["rps"] else ""])
    print(f"\nIngress, closed loop, {duration:.0f} s per run; gunicorn {args.workers}x{args.threads} gthread; "
          f"{os.cpu_count()} cores shared with the load generator")
    common.print_table(["route", "conc", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "ours/base"],
                       rows)

    top = max(levels)
    cpu_rows = []
    for route in ("webhook", "baseline"):
        r = results[(route, top)]
        ok = max(1, r["ok"])
        cpu = r["cpu"]
        total = sum(cpu.values())
        cpu_rows.append([route, top, total / r["elapsed"] * 100,
                         *(cpu[k] / ok * 1000 for k in ("gunicorn", "postgres", "redis-server", "bench")),
                         total / ok * 1000])
    print(f"\nWhere the CPU goes at c={top}: machine CPU use, and CPU ms per request by process "
          "(bench = the load generator; postgres counts every backend on the server)")
    common.print_table(["route", "conc", "cpu % of 1 core", "gunicorn", "postgres", "redis", "loadgen", "total"],
                       cpu_rows)

    best_ours = max(results[("webhook", lv)]["rps"] for lv in levels)
    best_base = max(results[("baseline", lv)]["rps"] for lv in levels)
    half = best_base / 2
    half_duration = max(duration, 5.0) if not args.quick else 4.0
    rate_rows = []
    rated: dict[str, dict] = {}
    # The target's load (half the baseline's best) for both routes; then the webhook at half of its own
    # best, to show its latency at a load it can actually sustain.
    for key, route, path, rate in (
        ("webhook", "webhook", webhooks.WEBHOOK_PATH, half),
        ("baseline", "baseline", common.BASELINE_PATH, half),
        ("webhook-own", "webhook (half its own best)", webhooks.WEBHOOK_PATH, best_ours / 2),
    ):
        common.log(f"{route} at {rate:.0f} req/s (open loop) for {half_duration:.0f} s")
        r = run_load(port, path, concurrency=16, duration=half_duration, rate=rate)
        rated[key] = r
        rate_rows.append([route, f"{rate:.0f}", r["rps"], r["errors"], r["p50"], r["p95"], r["p99"]])
        reset()
    print(f"\nAt a fixed rate: half the baseline's best throughput (open loop, 16 clients, {half_duration:.0f} s)")
    common.print_table(["route", "target/s", "achieved/s", "errors", "p50 ms", "p95 ms", "p99 ms"], rate_rows)

    processes.stop_process(gunicorn)
    ratio = best_ours / best_base if best_base else 0.0
    print(
        f"\ningress_rps={best_ours:.0f} baseline_rps={best_base:.0f} ratio={ratio:.2f} "
        f"half_rate={half:.0f} p99_at_half_ms={rated['webhook']['p99']:.1f} "
        f"baseline_p99_at_half_ms={rated['baseline']['p99']:.1f} "
        f"p99_at_half_own_ms={rated['webhook-own']['p99']:.1f} "
        f"target_ratio_met={'yes' if ratio >= 0.5 else 'no'} "
        f"target_p99_met={'yes' if rated['webhook']['p99'] < 25 else 'no'} gunicorn={args.workers}x{args.threads}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
