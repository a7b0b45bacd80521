"""What our Send API client costs per send, over a bare ``requests`` POST to the same local server.

Starts the harness's fake Graph API (:class:`harness.fake_graph.FakeGraph`, a threaded HTTP server on
127.0.0.1 answering every send as Facebook does), points ``MESSENGER_GRAPH_API_URL`` at it with a
fake page token, and times, in the same run and interleaved (so drift hits both alike), N
``send_message`` calls (pooled session, circuit breaker on the real Redis, classification, logging
context) against N ``Session.post`` calls on one bare pooled ``requests.Session``. Prints the median
and p99 (``harness.stats``: the project's one percentile definition) of both and the overhead per
send (ours - bare).

Run:  .venv/bin/python bench/send_overhead.py [--n 1000]
Redis is the one in ``REDIS_URL`` (as configured for the app); the circuit key used is
``messenger:circuit:send_api`` and, with every send succeeding, it is only read, never written.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")  # per-send INFO lines would measure the console

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from django.conf import settings  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from harness.fake_graph import FakeGraph  # noqa: E402
from harness.stats import percentile  # noqa: E402
from messenger import send_api  # noqa: E402
from messenger.circuit import get_breaker  # noqa: E402

FAKE_TOKEN = "EAAbenchFAKEtoken"
PSID = "1254477777772919"
MESSAGE = {"text": "Thanks for your message! We'll get back to you shortly."}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="sends of each kind (default 1000)")
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()

    fake = FakeGraph().start()
    base = fake.base_url

    with override_settings(MESSENGER_GRAPH_API_URL=base, MESSENGER_PAGE_ACCESS_TOKEN=FAKE_TOKEN):
        breaker = get_breaker()
        breaker.reset()
        send_api.reset_session()
        bare = requests.Session()
        url = f"{base}/me/messages"
        body = {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": MESSAGE}
        headers = {"Authorization": f"Bearer {FAKE_TOKEN}"}
        timeout = settings.MESSENGER_SEND_TIMEOUT_MS / 1000

        def ours() -> None:
            result = send_api.send_message(psid=PSID, message=MESSAGE, log_context={"mid": "m_bench"})
            if not result.ok:
                raise SystemExit(f"send failed: {result}")

        def baseline() -> None:
            response = bare.post(url, json=body, headers=headers, timeout=timeout)
            response.raise_for_status()

        for _ in range(args.warmup):
            ours()
            baseline()

        ours_ms: list[float] = []
        bare_ms: list[float] = []
        for _ in range(args.n):
            start = time.perf_counter()
            ours()
            ours_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            baseline()
            bare_ms.append((time.perf_counter() - start) * 1000)

        state = breaker.state()
    fake.stop()

    ours_med, bare_med = statistics.median(ours_ms), statistics.median(bare_ms)
    ours_p99, bare_p99 = percentile(ours_ms, 99), percentile(bare_ms, 99)
    print(f"send_message vs bare requests.Session.post, {args.n} each, local server {base}")
    print(f"redis: {settings.REDIS_URL.rsplit('@', 1)[-1]}  circuit after run: {state}")
    print(f"{'':14}{'median ms':>12}{'p99 ms':>12}")
    print(f"{'send_message':14}{ours_med:12.3f}{ours_p99:12.3f}")
    print(f"{'bare post':14}{bare_med:12.3f}{bare_p99:12.3f}")
    print(f"{'overhead':14}{ours_med - bare_med:12.3f}{ours_p99 - bare_p99:12.3f}   (ours - bare)")
    print(json.dumps({"n": args.n, "ours_median_ms": round(ours_med, 3), "bare_median_ms": round(bare_med, 3),
                      "overhead_median_ms": round(ours_med - bare_med, 3), "ours_p99_ms": round(ours_p99, 3),
                      "bare_p99_ms": round(bare_p99, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
