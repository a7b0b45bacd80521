"""The V2 webhook at ``/messenger/v2/webhook``: verify, parse, keep, enqueue, answer. Nothing slow.

The POST follows a fixed order of checks (Sentry's webhook pattern): size, signature over the raw
bytes, UTF-8, JSON, shape; then the events are kept in the durable inbox and their jobs queued.
No chat engine or Send API work happens in the request: Facebook gets its 200 in milliseconds.
Only the body as a whole can be refused (4xx); a signed body that passes is kept whole: strings the
database can't store are made storable (``messenger.storable``) and items that can't be read are kept
raw as ``unreadable`` (``messenger.parsing``), so one odd item never makes Facebook redeliver the rest.
"""

from __future__ import annotations

import hmac
import json
import logging
import time

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from messenger import echoes, inbox
from messenger.parsing import PayloadError, UnsupportedObject, parse_webhook
from messenger.people import people_events_handle
from messenger.signature import SIGNATURE_HEADER, check_signature
from messenger.storable import may_hold_unstorable, storable
from observability.metrics import webhook_answer_count, webhook_answer_count_on

logger = logging.getLogger("messenger.webhook")


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _refuse_constant(name: str) -> None:
    """``NaN`` and ``Infinity`` are not JSON (and jsonb refuses them): the body is malformed."""
    raise ValueError(f"{name} is not JSON")


@method_decorator(csrf_exempt, name="dispatch")  # Facebook signs its POSTs; it has no CSRF token
class WebhookV2View(View):
    """Facebook's verification GET and signed event POSTs (contract: ../CONTRACT.md, HTTP table).

    A plain Django view, not DRF's ``APIView``: the body is read raw (the signature covers bytes, not
    parsed JSON), there is no authentication, permission or content negotiation to run, and DRF's
    request wrapping and dispatch were a tenth of the request's CPU (docs/performance.md, ingress).
    """

    def dispatch(self, request, *args, **kwargs):
        """Answer as the handlers do, and count the answer's status for /metrics.

        The count is one Redis round trip that never raises (observability.metrics), none for a 200
        that queued jobs: it went in their enqueue's transaction; an exception that escapes the view
        is counted as the 500 Django will answer, then re-raised unchanged.
        """
        self.answer_counted = False  # set by post when the count went with the jobs' enqueue
        try:
            response = super().dispatch(request, *args, **kwargs)
        except Exception:
            webhook_answer_count(method=request.method, status=500)
            raise
        if not (self.answer_counted and response.status_code == 200):
            webhook_answer_count(method=request.method, status=response.status_code)
        return response

    def get(self, request):
        params = request.GET
        token = settings.MESSENGER_VERIFY_TOKEN
        given = params.get("hub.verify_token", "")
        if (
            params.get("hub.mode") == "subscribe"
            and token
            and hmac.compare_digest(given.encode(), token.encode())
        ):
            logger.info("messenger.webhook.verified")
            return HttpResponse(params.get("hub.challenge", ""), content_type="text/plain")
        logger.warning("messenger.webhook.verification-refused", extra={"mode": params.get("hub.mode", "")})
        return HttpResponse("verification failed", status=403, content_type="text/plain")

    def post(self, request):
        started = time.perf_counter()
        limit = settings.MESSENGER_MAX_BODY_BYTES
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _error(400, "invalid Content-Length")
        if declared > limit:
            logger.warning("messenger.webhook.too-large", extra={"bytes": declared})
            return _error(413, f"body larger than {limit} bytes")
        body = request.body
        if len(body) > limit:
            logger.warning("messenger.webhook.too-large", extra={"bytes": len(body)})
            return _error(413, f"body larger than {limit} bytes")

        problem = check_signature(
            body=body, header=request.headers.get(SIGNATURE_HEADER), secret=settings.MESSENGER_APP_SECRET
        )
        if problem is not None:
            logger.warning("messenger.webhook.invalid-signature", extra={"problem": problem.value})
            return _error(403, "invalid signature")

        try:
            data = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
            if may_hold_unstorable(body):
                data = storable(data)
        except UnicodeDecodeError:
            logger.warning("messenger.webhook.not-utf8")
            return _error(400, "body is not UTF-8")
        except ValueError:
            logger.warning("messenger.webhook.malformed-json")
            return _error(400, "malformed JSON")

        try:
            events = parse_webhook(data)
        except UnsupportedObject as exc:
            logger.warning("messenger.webhook.unsupported-object", extra={"object": str(exc)[:64]})
            return _error(404, "object is not 'page'")
        except PayloadError as exc:
            logger.warning("messenger.webhook.invalid-payload", extra={"problem": str(exc)})
            return _error(400, str(exc))

        echoes.echoes_record(events=events)
        kept = inbox.inbox_keep_events(events=events, started=started)
        people_events_handle(events=events)  # echoes from people, standby, handovers (messenger.people)
        counted = []
        _queued, pending = inbox.inbox_enqueue(
            rows=kept.kept,
            on_pipeline=lambda pipe: counted.append(webhook_answer_count_on(pipe, method="POST", status=200)),
        )
        self.answer_counted = counted == [True] and not pending
        logger.info(
            "messenger.webhook.received",
            extra={
                "events": len(events),
                "kept": len(kept.kept),
                "unreadable": len(kept.unreadable),
                "duplicates": kept.duplicates,
                "ignored": dict(kept.ignored),
                "left_pending": pending,
                "ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return JsonResponse({
            "received": len(events),
            "kept": len(kept.kept),
            "unreadable": len(kept.unreadable),
            "duplicates": kept.duplicates,
        })
