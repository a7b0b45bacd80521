"""Benchmark: the observability report's selector on 100,000 events in PostgreSQL.

Usage (from the repository root)::

    .venv/bin/python bench/observability_report.py [--events 100000] [--runs 5] [--reset]

Configures Django itself. ``DATABASE_URL`` defaults to postgres://root@127.0.0.1:5432/chatbot_bench
(the database is created on the ``postgres`` maintenance database when missing, then migrated);
``REDIS_URL`` defaults to redis://127.0.0.1:6379/9 (only the settings need it).

It bulk-inserts ``--events`` events spread over the last hour, shaped like real journeys
(received, classified, generated, then sent or failed, some deferred or expired). When that many
exist already it inserts nothing and slides them forward so the newest is now and all lie in the
last hour; ``--reset`` always starts afresh. Then it times ``report_build(minutes=60)`` (median of
``--runs`` runs, after one warm-up), prints the figures and ends with ``report_100k_ms=<median>``.
The target is under 1000 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402 - after the path is set

os.environ.setdefault("DATABASE_URL", "postgres://root@127.0.0.1:5432/chatbot_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/9")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

BATCH = 5000


def journey(rng: random.Random) -> list[tuple[str, float | None, dict]]:
    """One message's events: (event type, step latency ms, detail)."""
    steps: list[tuple[str, float | None, dict]] = [("message_received", rng.uniform(1, 15), {"kind": "text"})]
    roll = rng.random()
    if roll < 0.05:
        return steps  # needed no reply
    if roll < 0.07:
        return [*steps, ("message_expired", None, {"reason": "outside_window"})]
    intent_ms = rng.lognormvariate(3, 0.5)
    steps.append(("intent_classified", intent_ms, {"intent": "greeting", "confidence": rng.random()}))
    steps.append(("response_generated", rng.lognormvariate(5, 0.8),
                  {"intent": "greeting", "part_count": 2, "timed_out": False}))
    if roll < 0.10:
        steps.append(("message_deferred", None, {"reason": "circuit_open", "retry_in_ms": 30000}))
    if roll < 0.13:
        return [*steps, ("send_failed", rng.uniform(50, 500), {"error_kind": "transient", "error_code": 2})]
    since_receipt = rng.lognormvariate(6, 0.6)
    steps.append(("response_sent", rng.lognormvariate(5, 0.5), {
        "part_count": 2, "end_to_end_ms": since_receipt + rng.uniform(200, 3000),
        "since_receipt_ms": since_receipt,
    }))
    return steps


def seed(*, total: int, reset: bool) -> None:
    """Make sure ``total`` events lie in the last hour (or start afresh with ``reset``)."""
    from django.db import connection
    from django.db.models import F, Max
    from django.utils import timezone

    from observability.hashing import hash_psid
    from observability.models import Event

    if not reset and Event.objects.count() >= total:
        # Slide the existing events forward so the newest is now: they all lie in the hour again.
        newest = Event.objects.aggregate(newest=Max("created_at"))["newest"]
        Event.objects.update(created_at=F("created_at") + (timezone.now() - newest))
        present = Event.objects.filter(created_at__gte=timezone.now() - timedelta(minutes=60)).count()
        if present >= total:
            print(f"{present} events already in the last hour; not inserting (--reset starts afresh)")
            return
    Event.objects.all().delete()
    rng = random.Random(6)  # reproducible data, not a secret
    now = timezone.now()
    psids = [hash_psid(f"bench-user-{n}") for n in range(2000)]
    batch: list[Event] = []
    inserted = inbound_id = 0
    started = time.perf_counter()
    while inserted < total:
        inbound_id += 1
        at = now - timedelta(seconds=rng.uniform(5, 3540))
        psid_hash = rng.choice(psids)
        for step, latency_ms, detail in journey(rng):
            if inserted >= total:
                break
            at += timedelta(milliseconds=latency_ms or 5)
            batch.append(Event(event_type=step, psid_hash=psid_hash, inbound_id=inbound_id,
                               conversation_id=inbound_id // 5, mid=f"m_bench_{inbound_id}",
                               latency_ms=latency_ms, detail=detail, created_at=at))
            inserted += 1
        if len(batch) >= BATCH:
            Event.objects.bulk_create(batch)
            batch = []
    if batch:
        Event.objects.bulk_create(batch)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE observability_event")
    print(f"inserted {inserted} events ({inbound_id} messages) in {time.perf_counter() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reset", action="store_true", help="delete all events and insert afresh")
    args = parser.parse_args()

    common.ensure_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)

    from observability.management.commands.observability_report import report_format_text
    from observability.selectors import report_build

    seed(total=args.events, reset=args.reset)

    report_build(minutes=60)  # warm-up: connection, plan cache
    timings = []
    for _ in range(args.runs):
        started = time.perf_counter()
        report = report_build(minutes=60)
        timings.append((time.perf_counter() - started) * 1000)
    print(report_format_text(report))
    print()
    print(json.dumps({"runs_ms": [round(t, 1) for t in timings]}))
    print(f"report_100k_ms={statistics.median(timings):.1f}")


if __name__ == "__main__":
    main()
