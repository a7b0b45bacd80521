"""Benchmark: loading a returning user's context with the Redis history cache hit vs missed.

Usage (from the repository root)::

    .venv/bin/python bench/context.py [--loads 1000] [--history 10]

Configures Django itself. ``DATABASE_URL`` defaults to postgres://root@127.0.0.1:5432/chatbot_bench
(created on the ``postgres`` maintenance database when missing, then migrated); ``REDIS_URL``
defaults to redis://127.0.0.1:6379/9.

It starts a conversation for a fresh PSID with ``--history`` earlier messages, then times ``--loads``
pairs, interleaved so drift hits both alike: the history key is deleted (untimed) and one
``context_load`` runs on a cache **miss**; then one runs on a cache **hit** (the previous load filled
the cache and its append pushed to it after commit). Each load is the handler's full call: get the
conversation, read the history, append the inbound message (INSERT + UPDATE, committed). It also
times the loading part alone (``conversation_get_or_start`` + ``history_recent``), where the
cache makes the difference, and counts database queries per call with ``CaptureQueriesContext``
(separate, untimed calls). Prints median and p99 in milliseconds, and a closing line with the
hit/miss ratio. The rows it creates are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402 - after the path is set
from harness.rows import inbound_text_make  # noqa: E402
from harness.stats import percentile  # noqa: E402

os.environ.setdefault("DATABASE_URL", "postgres://root@127.0.0.1:5432/chatbot_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/9")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")  # per-load INFO lines would measure the console

PAGE_ID = "bench-page"


def queries_per_processed_message(run: str) -> int:
    """Database queries the pipeline makes to answer one text message of a returning user (the job's
    whole body, ``sender_drain``), with sends in dry-run and the rules engine."""
    import time as _time

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from messenger.models import InboundMessage
    from messenger.pipeline import sender_drain

    psid = f"bench-q-{run}"
    counts = []
    for i in range(3):  # the first creates the conversation; the last is a returning user's message
        row = inbound_text_make(
            mid=f"{run}.q{i}", page_id=PAGE_ID, psid=psid, text="help", fb_timestamp=int(_time.time() * 1000),
            status="queued", queue_name="messenger_fast",
        )
        with CaptureQueriesContext(connection) as ctx:
            sender_drain(inbound_id=row.id, worker_name="bench")
        counts.append(len(ctx.captured_queries))
    InboundMessage.objects.filter(psid=psid).delete()
    return counts[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, default=1000, help="loads per case (default 1000)")
    parser.add_argument("--history", type=int, default=10, help="earlier messages (default 10)")
    args = parser.parse_args()

    common.ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    from conversations import cache
    from conversations.models import Conversation
    from conversations.selectors import history_recent
    from conversations.services import context_load, conversation_get_or_start, message_append

    call_command("migrate", verbosity=0)
    # DEBUG (the dev default) logs every query in memory: that would be part of what we time.
    settings.DEBUG = False
    run = uuid.uuid4().hex[:12]
    psid = f"bench-{run}"

    first = context_load(page_id=PAGE_ID, psid=psid, text="hello", fb_message_id=f"{run}.0")
    conversation = first.conversation
    for i in range(1, args.history):
        message_append(
            conversation=conversation,
            direction="out" if i % 2 else "in",
            text=f"earlier message {i} " + "lorem ipsum " * 8,
        )

    def forget() -> None:
        cache.history_forget(conversation_id=conversation.pk)

    def load(tag: str) -> None:
        context_load(page_id=PAGE_ID, psid=psid, text="how much is delivery?", fb_message_id=f"{run}.{tag}")

    def load_part() -> None:
        found, _created = conversation_get_or_start(page_id=PAGE_ID, psid=psid)
        history_recent(conversation=found)

    def load_history() -> None:
        history_recent(conversation=conversation)

    # Each case: what runs, timed (or counted) once on a cache miss and once right after, on a hit.
    cases = {"": load, "part ": lambda _tag: load_part(), "history ": lambda _tag: load_history()}
    timings: dict[str, list[float]] = {f"{case}{outcome}": [] for case in cases for outcome in ("hit", "miss")}
    try:
        for i in range(20):  # warm-up: connections, statement plans
            forget()
            load(f"warm{i}")
            load_part()
        for i in range(args.loads):
            for case, run_case in cases.items():
                forget()
                for outcome in ("miss", "hit"):
                    t0 = time.perf_counter()
                    run_case(f"{outcome[0]}{i}")
                    timings[f"{case}{outcome}"].append((time.perf_counter() - t0) * 1000)

        queries: dict[str, int] = {}
        reset_queries()
        for case, run_case in cases.items():
            forget()
            for outcome in ("miss", "hit"):
                with CaptureQueriesContext(connection) as ctx:
                    run_case(f"q{outcome}")
                queries[f"{case}{outcome}"] = len(ctx.captured_queries)
        per_message = queries_per_processed_message(run)
    finally:
        forget()
        Conversation.objects.filter(page_id=PAGE_ID, psid=psid).delete()

    print(
        f"context loads: {args.loads} per case, history limit {settings.MESSENGER_HISTORY_LIMIT}, "
        f"{args.history} earlier messages, PostgreSQL + Redis on {connection.settings_dict['HOST']}"
    )
    print(f"{'case':<34} {'median ms':>10} {'p99 ms':>10} {'DB queries':>11}")
    labels = {
        "hit": "context_load, cache hit",
        "miss": "context_load, cache miss",
        "part hit": "loading part only, cache hit",
        "part miss": "loading part only, cache miss",
        "history hit": "recent history, cache hit",
        "history miss": "recent history, cache miss",
    }
    for key, label in labels.items():
        values = timings[key]
        print(f"{label:<34} {statistics.median(values):>10.3f} {percentile(values, 99):>10.3f} {queries[key]:>11}")
    history_speedup = statistics.median(timings["history miss"]) / statistics.median(timings["history hit"])
    print(
        f"queries per processed message (webhook row -> reply sent, dry-run Send API, rules engine, "
        f"returning user): {per_message}"
    )
    print(f"history: a cache hit is {history_speedup:.1f}x faster than a miss (median)")
    ratio = statistics.median(timings["hit"]) / statistics.median(timings["miss"])
    part_ratio = statistics.median(timings["part hit"]) / statistics.median(timings["part miss"])
    print(
        f"hit/miss median ratio: context_load {ratio:.2f}, loading part {part_ratio:.2f}; "
        f"DB queries per context_load: hit={queries['hit']} miss={queries['miss']} "
        f"(loading part: hit={queries['part hit']} miss={queries['part miss']})"
    )


if __name__ == "__main__":
    main()
