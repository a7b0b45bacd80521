"""``/healthz``: is the database there, is Redis there. Load balancers and ops read it.

The project's view (not the channel's): it answers for the whole deployment. Redis is asked through
the default cache's client (``CACHES``), on the same ``REDIS_URL`` the queues use.

``pages`` (``{"<page_id>": "ok" | "token_failing"}``, ``messenger.token_health``) names every page the
channel has sent for and whether its token is failing. A failing token does **not** make the answer
503: the web is healthy (it keeps receiving and storing messages, which are parked until a working
token is set), and a load balancer that took it out of rotation would lose the webhook too. Alert on
``pages`` (or on the ``messenger.token.failing`` log) instead. When Redis is down ``pages`` is
``{}``, and ``redis`` already says why.
"""

from __future__ import annotations

import logging

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET
from django_redis import get_redis_connection

from messenger.token_health import token_pages_status

logger = logging.getLogger("chatbot.health")


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"; it is reported
        logger.warning("chatbot.health.database-down", extra={"error": type(exc).__name__})
        return type(exc).__name__
    return None


def _check_redis() -> str | None:
    try:
        get_redis_connection("default").ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"; it is reported
        logger.warning("chatbot.health.redis-down", extra={"error": type(exc).__name__})
        return type(exc).__name__
    return None


def _pages(redis_error: str | None) -> dict[str, str]:
    if redis_error:
        return {}
    try:
        return token_pages_status()
    except Exception as exc:  # noqa: BLE001 - the pages section is informative; never fail the check
        logger.warning("chatbot.health.pages-unknown", extra={"error": type(exc).__name__})
        return {}


@require_GET
def healthz(request):
    """200 ``{"status": "ok", ...}`` when both answer; 503 naming the one that does not; ``pages`` either way."""
    results = {"database": _check_database(), "redis": _check_redis()}
    failures = {name: error for name, error in results.items() if error}
    checks = {name: ("down" if name in failures else "ok") for name in ("database", "redis")}
    pages = _pages(results["redis"])
    if failures:
        return JsonResponse(
            {"status": "unavailable", "checks": checks, "failing": sorted(failures), "pages": pages}, status=503
        )
    return JsonResponse({"status": "ok", "checks": checks, "pages": pages})
