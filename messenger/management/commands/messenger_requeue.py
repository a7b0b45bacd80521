"""``python manage.py messenger_requeue``: put every kept-but-unanswered message back on its queue."""

from __future__ import annotations

from datetime import timedelta

import redis
from django.core.management.base import BaseCommand, CommandError

from messenger.inbox import inbox_requeue


class Command(BaseCommand):
    help = (
        "Puts back on the queues every inbound message that was kept but not answered and has no live "
        "job: left pending while Redis was down, lost from a restarted Redis, or held by a worker that died."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--min-age",
            type=float,
            default=10.0,
            help="Seconds a message must have waited before it is requeued (default 10): younger ones "
            "may still be on their way to the queue.",
        )
        parser.add_argument("--limit", type=int, default=10000, help="Most messages to requeue in one run.")

    def handle(self, *args, **options):
        try:
            result = inbox_requeue(min_age=timedelta(seconds=options["min_age"]), limit=options["limit"])
        except redis.RedisError as exc:
            raise CommandError(
                f"Redis is not reachable ({type(exc).__name__}); nothing was requeued."
            ) from exc
        self.stdout.write(
            f"requeued={len(result.requeued)} already_queued={result.skipped_alive}"
        )
