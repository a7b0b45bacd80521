"""Ingress benchmark: the signed V2 webhook under gunicorn against a bare DRF view, same server, same run,
driven by ``wrk`` (a C load generator: a Python client saturates before the server does).

Usage (from the repository root)::

    .venv/bin/python bench/ingress.py [--quick] [--duration 10] [--connections 16] [--rounds 2]
                                      [--workers 2 --threads 4] [--redis-db 7] [--open-loop]

What it does:

1. Installs Debian's ``wrk`` when it is missing (``apt-get install -y -qq wrk``, as ``scripts/test.sh``
   installs Chromium). Creates PostgreSQL ``chatbot_bench_ingress`` afresh and flushes Redis db
   ``--redis-db``; starts gunicorn (``chatbot.wsgi``, production settings: ``DJANGO_DEBUG=false``,
   ``BENCH_BASELINE_ROUTE=true``, ``LOG_LEVEL=WARNING``) on a free loopback port, ``--workers`` x
   ``--threads`` gthread (2 x 4 by default). No rq worker runs: the jobs pile up in Redis, which is
   flushed (and the inbox truncated) between runs.
2. Writes ``--bodies`` signed webhook bodies (one text message each, distinct mids and senders) to a
   temporary directory with a wrk Lua script that formats them once and cycles through them, each wrk
   thread from its own offset, so no mid repeats within a run (a repeat would take the redelivery path).
3. For ``--rounds`` rounds, ``wrk -c <connections>`` for ``--duration`` seconds against the webhook, then
   against the baseline (``/bench/baseline``: ``chatbot.bench_views.BaselineView``, an ``APIView`` that
   answers 200 to a POST without touching the body or the database, mounted only when the bench-only
   setting ``BENCH_BASELINE_ROUTE`` is true, never in a deployment), same bodies, same headers.
   Alternating rounds spread the noise of a shared machine over both routes.
4. Prints req/s, p50/p99 (wrk's own latency histogram), non-2xx answers, CPU ms per request by process,
   and the ratio webhook/baseline of the best round of each; with ``--open-loop`` also the latency at a
   fixed rate from the older Python open-loop client (``bench/ingress_open_loop.py``).

The machine has 2 cores and wrk runs on them too: every figure is "server plus client on 2 cores".
Closing line: ``key=value`` figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from harness import db, processes, redis_db, resources, webhooks

WRK_THREADS = 2  # one per core; more threads only take CPU from the server

# wrk's Lua: each thread formats every request once (init), then cycles through them from its own
# offset; done() prints one JSON line the bench parses (latencies in microseconds).
LUA = r"""
local bodies_file = "%(bodies)s"
local path = "%(path)s"
local threads, counter = {}, 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(bodies_file, "r"))
  requests = {}
  for line in f:lines() do
    local sig, body = line:match("^(%%S+)\t(.*)$")
    requests[#requests + 1] = wrk.format("POST", path, {
      ["Content-Type"] = "application/json",
      ["X-Hub-Signature-256"] = sig,
    }, body)
  end
  f:close()
  local nthreads = tonumber(args[1]) or 1
  index = math.floor(#requests / nthreads) * tid
end

function request()
  index = index + 1
  if index > #requests then index = 1 end
  return requests[index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write("WRKJSON " .. string.format(
    '{"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, "status": %%d, ' ..
    '"timeout": %%d, "p50": %%d, "p90": %%d, "p99": %%d, "max": %%d}',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max) .. "\n")
end
"""


def ensure_wrk() -> str:
    """The path of ``wrk``, installed from Debian's mirror when missing (CI runs as root)."""
    found = shutil.which("wrk")
    if found:
        return found
    common.log("wrk not found: apt-get install -y -qq wrk")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env={**os.environ,
                                                                                "DEBIAN_FRONTEND": "noninteractive"})
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is still missing after apt-get install")
    return found


def write_bodies(directory: Path, count: int) -> Path:
    """``count`` signed one-message bodies, one ``<signature>\\t<body>`` a line; distinct mids and senders."""
    path = directory / "bodies.tsv"
    now = int(time.time() * 1000)
    with open(path, "w") as out:
        for i in range(count):
            body = webhooks.encode(webhooks.text_body(
                "hello, what are your opening hours?", mid=f"m_wrk_{i:07d}", psid=f"7{i % 5000:015d}", ts_ms=now + i,
            ))
            signature = webhooks.signed_headers(body, common.APP_SECRET)["X-Hub-Signature-256"]
            assert b"\n" not in body and b"\t" not in body
            out.write(f"{signature}\t{body.decode()}\n")
    return path


def write_lua(directory: Path, bodies: Path, path: str) -> Path:
    script = directory / f"{path.strip('/').replace('/', '_')}.lua"
    script.write_text(LUA % {"bodies": bodies, "path": path})
    return script


def run_wrk(wrk: str, port: int, path: str, script: Path, *, connections: int, duration: float,
            groups: dict[str, list[int]]) -> dict:
    """One wrk run; returns req/s, latency percentiles (ms), errors and CPU seconds by process."""
    cpu_before = resources.cpu_snapshot(groups)
    cmd = [wrk, "-t", str(WRK_THREADS), "-c", str(connections), "-d", f"{duration:g}s", "--timeout", "10s",
           "-s", str(script), f"http://127.0.0.1:{port}{path}", "--", str(WRK_THREADS)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    cpu = resources.cpu_delta(cpu_before, resources.cpu_snapshot(groups))
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    r = json.loads(line.removeprefix("WRKJSON "))
    elapsed = r["duration_us"] / 1e6
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return {
        "requests": r["requests"],
        "errors": errors,
        "non2xx": r["status"],
        "rps": (r["requests"] - errors) / elapsed if elapsed else 0.0,
        "p50": r["p50"] / 1000,
        "p90": r["p90"] / 1000,
        "p99": r["p99"] / 1000,
        "cpu": cpu,
        "elapsed": elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 s per run, one round")
    parser.add_argument("--duration", type=float, default=None, help="seconds per wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=None, help="webhook-then-baseline rounds (default 2)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--bodies", type=int, default=40000, help="distinct pre-signed bodies (default 40000)")
    parser.add_argument("--workers", type=int, default=processes.GUNICORN_WORKERS)
    parser.add_argument("--threads", type=int, default=processes.GUNICORN_THREADS)
    parser.add_argument("--redis-db", type=int, default=7)
    parser.add_argument("--log-level", default="WARNING", help="the project's LOG_LEVEL (default WARNING)")
    parser.add_argument("--open-loop", action="store_true", help="also the Python open-loop latency runs")
    args = parser.parse_args()
    duration = args.duration or (4.0 if args.quick else 10.0)
    rounds = args.rounds or (1 if args.quick else 2)

    wrk = ensure_wrk()
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
        # Requests wrk left in flight may still be writing: let them finish, and retry the TRUNCATE
        # if one of them still deadlocks with it (it locks both tables, in its own order).
        time.sleep(0.5)
        for attempt in range(5):
            try:
                db.truncate_app_tables(db_url)
                break
            except psycopg.errors.DeadlockDetected:
                if attempt == 4:
                    raise
                time.sleep(0.5)
        redis_db.flush_redis(redis)

    routes = (("webhook", webhooks.WEBHOOK_PATH), ("baseline", common.BASELINE_PATH))
    results: dict[str, list[dict]] = {"webhook": [], "baseline": []}
    with tempfile.TemporaryDirectory(prefix="bench-ingress-") as tmp:
        bodies = write_bodies(Path(tmp), args.bodies)
        scripts = {route: write_lua(Path(tmp), bodies, path) for route, path in routes}
        # Warm-up: connections to PostgreSQL/Redis, imports, statement caches, for both routes.
        for route, path in routes:
            run_wrk(wrk, port, path, scripts[route], connections=args.connections, duration=2, groups=groups)
        reset()
        for n in range(rounds):
            for route, path in routes:
                common.log(f"round {n + 1}: {route}, wrk -c {args.connections} for {duration:g} s")
                r = run_wrk(wrk, port, path, scripts[route], connections=args.connections, duration=duration,
                            groups=groups)
                if r["requests"] > args.bodies:
                    common.log(f"warning: {r['requests']} requests > {args.bodies} bodies: mids repeated")
                results[route].append(r)
                reset()

    rows = []
    for n in range(rounds):
        ours, base = results["webhook"][n], results["baseline"][n]
        for route, r in (("webhook", ours), ("baseline", base)):
            ratio = f"{ours['rps'] / base['rps'] * 100:.0f}%" if route == "webhook" and base["rps"] else ""
            rows.append([n + 1, route, r["requests"], r["errors"], r["rps"], r["p50"], r["p90"], r["p99"], ratio])
    print(f"\nIngress, wrk -t{WRK_THREADS} -c{args.connections}, {duration:g} s per run, pre-signed bodies; "
          f"gunicorn {args.workers}x{args.threads} gthread; {os.cpu_count()} cores shared with wrk")
    common.print_table(["round", "route", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms",
                        "ours/base"], rows)

    best = {route: max(results[route], key=lambda r: r["rps"]) for route in results}
    cpu_rows = []
    for route in ("webhook", "baseline"):
        r = best[route]
        ok = max(1, r["requests"] - r["errors"])
        cpu = r["cpu"]
        total = sum(cpu.values())
        cpu_rows.append([route, total / r["elapsed"] * 100,
                         *(cpu[k] / ok * 1000 for k in ("gunicorn", "postgres", "redis-server", "bench")),
                         total / ok * 1000])
    print("\nWhere the CPU goes (best round of each): machine CPU use, and CPU ms per request by process "
          "(wrk = the load generator; postgres counts every backend on the server)")
    common.print_table(["route", "cpu % of 1 core", "gunicorn", "postgres", "redis", "wrk", "total"], cpu_rows)

    open_loop = ""
    if args.open_loop:
        from bench import ingress_open_loop

        open_loop = " " + ingress_open_loop.report(port, best_base=best["baseline"]["rps"],
                                                   best_ours=best["webhook"]["rps"], reset=reset)

    processes.stop_process(gunicorn)
    ours, base = best["webhook"], best["baseline"]
    ratio = ours["rps"] / base["rps"] if base["rps"] else 0.0
    print(
        f"\ningress_rps={ours['rps']:.0f} baseline_rps={base['rps']:.0f} ratio={ratio:.2f} "
        f"ingress_p50_ms={ours['p50']:.2f} ingress_p99_ms={ours['p99']:.2f} "
        f"baseline_p50_ms={base['p50']:.2f} baseline_p99_ms={base['p99']:.2f} "
        f"errors={ours['errors'] + base['errors']} target_ratio_met={'yes' if ratio >= 0.30 else 'no'} "
        f"connections={args.connections} gunicorn={args.workers}x{args.threads}{open_loop}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
