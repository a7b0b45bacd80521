"""Benchmark: what answering one text message costs the worker, in-process (issue 14, item 2).

Usage (from the repository root)::

    .venv/bin/python bench/message_cost.py [--messages 200] [--users 20] [--redis-db 11]

It runs ``sender_drain`` (the rq job's body) in this process, in a loop, for returning users' text
messages with the rules engine, against the fake Graph API (``harness.fake_graph``, in a child process
so its CPU is not ours) at 0 ms latency, and prints per message:

- SQL statements and commits, Redis round trips and Send API calls, counted on one message (the
  counting of ``harness.cost``, which ``tests/messenger/test_message_cost.py`` pins);
- CPU ms of this process (``time.process_time``: every thread, the engine's and the lock's included;
  not PostgreSQL's or Redis's) and wall ms, over ``--messages`` messages.

Its own PostgreSQL database ``<BENCH_PG_DB_PREFIX>message_cost`` (recreated and migrated) and Redis
database ``--redis-db`` (flushed). Production settings (``bench.common.project_env``), WARNING logs.
Ends with one ``key=value`` line.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402 - after the path is set
from harness import redis_db  # noqa: E402
from harness.fake_graph import FakeGraph  # noqa: E402

PAGE_ID = "bench-cost-page"
TEXT = "what are your opening hours?"


def _serve_graph(conn) -> None:
    """The child process: a fake Graph API at 0 ms; answers "count" with (messages, sender actions)."""
    with FakeGraph() as fake:
        conn.send(fake.base_url)
        while (command := conn.recv()) != "stop":
            if command == "count":
                conn.send((fake.message_count(), fake.counters.sender_actions))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200, help="messages timed (default 200)")
    parser.add_argument("--users", type=int, default=20, help="returning users they come from (default 20)")
    parser.add_argument("--redis-db", type=int, default=11, help="Redis database number (default 11)")
    args = parser.parse_args()

    parent, child = multiprocessing.get_context("fork").Pipe()
    graph = multiprocessing.get_context("fork").Process(target=_serve_graph, args=(child,), daemon=True)
    graph.start()
    graph_url = parent.recv()

    redis_url = redis_db.redis_url(args.redis_db)
    redis_db.flush_redis(redis_url)
    env = common.project_env(
        db_url="", redis=redis_url, MESSENGER_PAGE_ACCESS_TOKEN=common.PAGE_TOKEN, MESSENGER_PAGE_ID=PAGE_ID,
        MESSENGER_GRAPH_API_URL=graph_url,
    )
    env["DATABASE_URL"] = common.prepare_database("message_cost", env)
    os.environ.update(env)
    try:
        run(args, parent)
    finally:
        parent.send("stop")
        graph.join(timeout=5)


def run(args, graph) -> None:
    import django

    django.setup()
    from harness.cost import cost_counted
    from harness.rows import inbound_text_make
    from messenger.pipeline import sender_drain

    def make(i: int, user: int):
        return inbound_text_make(
            mid=f"m_cost_{i}", page_id=PAGE_ID, psid=f"9000{user:06d}", text=TEXT,
            fb_timestamp=int(time.time() * 1000), status="queued", queue_name="messenger_fast",
        )

    def answer(row) -> None:
        status = sender_drain(inbound_id=row.id, worker_name="bench")
        if status != "answered":
            raise SystemExit(f"message {row.mid} ended {status}, not answered")

    # Warm-up: every user's conversation exists and is cached, connections are open.
    for user in range(args.users):
        for turn in range(2):
            answer(make(-(user * 2 + turn + 1), user))

    graph.send("count")
    messages_before, actions_before = graph.recv()
    counted_row = make(0, 0)
    with cost_counted() as cost:
        answer(counted_row)
    time.sleep(0.2)  # a late sender action of the counted message, if any, reaches the fake
    graph.send("count")
    messages_after, actions_after = graph.recv()
    send_calls = (messages_after - messages_before) + (actions_after - actions_before)

    rows = [make(i, i % args.users) for i in range(1, args.messages + 1)]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for row in rows:
        answer(row)
    cpu_ms = (time.process_time() - cpu0) * 1000 / len(rows)
    wall_ms = (time.perf_counter() - wall0) * 1000 / len(rows)

    print(cost.report())
    common.print_table(
        ["per message", "value"],
        [
            ["SQL statements", cost.statements],
            ["transactions (commits)", cost.commits],
            ["Redis round trips", cost.round_trips],
            ["Send API calls", send_calls],
            ["worker CPU ms", f"{cpu_ms:.2f}"],
            ["wall ms", f"{wall_ms:.2f}"],
        ],
    )
    print(
        f"statements={cost.statements} commits={cost.commits} redis_round_trips={cost.round_trips} "
        f"send_api_calls={send_calls} cpu_ms_per_msg={cpu_ms:.2f} wall_ms_per_msg={wall_ms:.2f} "
        f"messages={len(rows)}"
    )


if __name__ == "__main__":
    main()
