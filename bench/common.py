"""What only the bench scripts share: their production-like environment, databases, texts and tables.

The bench scripts (``bench/ingress.py``, ``bench/pipeline.py``, ``bench/soak.py``) drive the project
the way production runs it: gunicorn and ``manage.py rqworker`` as subprocesses with their own
environment (production settings, :func:`project_env`), PostgreSQL and Redis for real, and Facebook
replaced by :class:`harness.fake_graph.FakeGraph`. The bench process itself does not set up Django:
it talks to PostgreSQL with psycopg and to Redis with redis-py/rq, so what it measures is only the
subprocesses. Process control, the fake Graph API, webhook bodies and signing, percentiles and
resource accounting come from the harness the tests use too (``harness/``).

Contracts:

- Every subprocess is started with :mod:`harness.processes` (its own process group, registered);
  each script calls :func:`harness.processes.install_cleanup` first, so a bench never leaves a
  gunicorn, worker or redis-server behind, even on SIGTERM/SIGINT/SIGHUP. Logs go to ``var/bench/``.
- Only loopback traffic: every server binds 127.0.0.1.
- Each script has its own PostgreSQL database ``chatbot_bench_<name>`` (created and migrated when
  missing, its app tables truncated at start; ``BENCH_PG_DB_PREFIX`` replaces ``chatbot_bench_``)
  and its own Redis database number (flushed at start).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterable

from harness import db
from harness.processes import PYTHON, ROOT

LOG_DIR = ROOT / "var" / "bench"

PG_BASE_URL = os.environ.get("BENCH_PG_URL", "postgres://root@127.0.0.1:5432")
# Two checkouts benching on one server at once each set their own prefix (their own databases).
PG_DB_PREFIX = os.environ.get("BENCH_PG_DB_PREFIX", "chatbot_bench_")

APP_SECRET = "bench-app-secret-0123456789abcdef"
SECRET_KEY = "bench-secret-key-" + "x" * 40
PAGE_TOKEN = "EAAbench-page-token-not-real"
BASELINE_PATH = "/bench/baseline"

# What the benches' users say (the rules engine answers each; a varied mix, no engine call is free).
TEXTS = [
    "hello",
    "what are your opening hours?",
    "thanks a lot",
    "menu",
    "how much is delivery?",
    "do you ship to Canada?",
    "ok thanks",
    "bye",
]

# ``bench/pipeline.py --classes``: the rq worker classes, chosen as ops choose them (``RQ_WORKER_CLASS``).
WORKER_CLASSES = {
    "messenger": "messenger.worker.MessengerWorker",  # a work horse forked per job
    "inprocess": "messenger.worker.MessengerInProcessWorker",  # jobs run in the worker process, one at a time
    "threads": "messenger.thread_worker.MessengerThreadWorker",  # many jobs at once on threads
}
# The classes that run ``MESSENGER_WORKER_CONCURRENCY`` messages at once per process (the others run one).
CONCURRENT_CLASSES = {"threads"}


def worker_class_env(worker_class: str | None, concurrency: int | None = None) -> dict[str, str]:
    """The environment that selects ``worker_class`` (a key of :data:`WORKER_CLASSES`; ``None``: the
    settings' default) and, when given, ``MESSENGER_WORKER_CONCURRENCY`` for rqworker."""
    env = {"RQ_WORKER_CLASS": WORKER_CLASSES[worker_class]} if worker_class else {}
    if concurrency is not None:
        env["MESSENGER_WORKER_CONCURRENCY"] = str(concurrency)
    return env


def class_key(dotted: str) -> str:
    """The :data:`WORKER_CLASSES` key of a dotted class path (the path itself when it has none)."""
    return next((key for key, path in WORKER_CLASSES.items() if path == dotted), dotted)


def worker_defaults(env: dict[str, str]) -> tuple[str, int | None]:
    """The worker class and ``MESSENGER_WORKER_CONCURRENCY`` the project's settings give in ``env``
    (asked of ``manage.py shell``, so the bench process never imports Django); ``None`` for a
    concurrency setting the project does not have."""
    code = ("import json; from django.conf import settings as s; "
            "print(json.dumps([s.RQ['WORKER_CLASS'], getattr(s, 'MESSENGER_WORKER_CONCURRENCY', None)]))")
    out = subprocess.run([PYTHON, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    worker_class, concurrency = json.loads(out.strip().splitlines()[-1])
    return worker_class, concurrency


# --- output ---------------------------------------------------------------------------------------


def fmt_row(cells: Iterable[object], widths: Iterable[int]) -> str:
    out = []
    for cell, width in zip(cells, widths, strict=False):
        if isinstance(cell, float):
            cell = "nan" if math.isnan(cell) else f"{cell:.1f}" if abs(cell) >= 10 else f"{cell:.2f}"
        out.append(str(cell).rjust(width))
    return "  ".join(out)


def print_table(headers: list[str], rows: list[list[object]]) -> None:
    """A plain right-aligned table on stdout."""
    rendered = [[fmt_row([c], [0]).strip() for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rendered)) if rendered else len(h) for i, h in enumerate(headers)]
    print(fmt_row(headers, widths))
    print("  ".join("-" * w for w in widths))
    for row in rendered:
        print(fmt_row(row, widths))
    sys.stdout.flush()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the project as the benches run it ------------------------------------------------------------


def database_url(name: str) -> str:
    return f"{PG_BASE_URL.rstrip('/')}/{PG_DB_PREFIX}{name}"


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database named in ``url`` when it does not exist yet (and say so)."""
    if db.ensure_database(url):
        log(f"created database {url.rsplit('/', 1)[-1]}")


def prepare_database(name: str, env: dict[str, str]) -> str:
    """Create ``<PG_DB_PREFIX><name>`` afresh (dropped first when it exists) and migrate it.

    Returns its URL. ``env`` is the environment the project runs with (``manage.py migrate`` runs
    as a subprocess in it, so the bench process never imports Django).
    """
    url = database_url(name)
    db.recreate_database(url)
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**env, "DATABASE_URL": url},
        check=True,
    )
    return url


def project_env(*, db_url: str, redis: str, **overrides: object) -> dict[str, str]:
    """The environment of the project's processes: production settings, the bench's DB and Redis.

    ``LOG_LEVEL`` is WARNING unless overridden: one INFO line per event on a console is a cost of
    its own (the bench measures the code, not the terminal).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESSENGER_", "CHATBOT_", "DJANGO_", "RQ_"))}
    env.pop("DATABASE_TEST_NAME", None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "chatbot.settings",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": SECRET_KEY,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "MESSENGER_APP_SECRET": APP_SECRET,
            "MESSENGER_VERIFY_TOKEN": "bench-verify",
            "DATABASE_URL": db_url,
            "REDIS_URL": redis,
            "LOG_LEVEL": "WARNING",
            "CHATBOT_ENGINE": "rules",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update({k: str(v) for k, v in overrides.items()})
    return env
