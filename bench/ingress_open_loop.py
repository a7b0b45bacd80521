"""The older Python load generator of ``bench/ingress.py``, kept for one thing wrk can't do: a fixed rate.

``bench/ingress.py --open-loop`` runs both routes at half the baseline's best throughput, then the
webhook at half its own best, open loop (each of 16 client threads sends on a schedule, whatever the
answers), and reports p50/p95/p99. Closed-loop throughput is wrk's job: this client saturates first.
"""

from __future__ import annotations

import http.client
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable

from bench import common
from harness import resources, stats, webhooks


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


def report(port: int, *, best_base: float, best_ours: float, reset: Callable[[], None],
           duration: float = 8.0) -> str:
    """The open-loop runs; prints their table and returns their ``key=value`` figures."""
    half = best_base / 2
    rows, rated = [], {}
    for key, route, path, rate in (
        ("webhook", "webhook", webhooks.WEBHOOK_PATH, half),
        ("baseline", "baseline", common.BASELINE_PATH, half),
        ("webhook-own", "webhook (half its own best)", webhooks.WEBHOOK_PATH, best_ours / 2),
    ):
        common.log(f"{route} at {rate:.0f} req/s (open loop) for {duration:.0f} s")
        r = run_load(port, path, concurrency=16, duration=duration, rate=rate)
        rated[key] = r
        rows.append([route, f"{rate:.0f}", r["rps"], r["errors"], r["p50"], r["p95"], r["p99"]])
        reset()
    print(f"\nAt a fixed rate (Python client, open loop, 16 clients, {duration:.0f} s)")
    common.print_table(["route", "target/s", "achieved/s", "errors", "p50 ms", "p95 ms", "p99 ms"], rows)
    return (f"half_rate={half:.0f} p99_at_half_ms={rated['webhook']['p99']:.1f} "
            f"baseline_p99_at_half_ms={rated['baseline']['p99']:.1f} "
            f"p99_at_half_own_ms={rated['webhook-own']['p99']:.1f}")
