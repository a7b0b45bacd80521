"""The legacy V1 webhook at ``/messenger/webhook``, kept exactly as production runs it.

V1 answers text messages synchronously inside the request, with a fixed acknowledgement and no
retries: the behaviour the V2 channel (``messenger.views``) replaces. It shares nothing with V2's
pipeline on purpose, and V2 work never edits this module (tests in tests/messenger/test_legacy.py
pin it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import requests
from django.conf import settings
from django.http import HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt

logger = logging.getLogger("messenger.v1")

V1_REPLY = "Thanks for your message! We'll get back to you soon."


def _signature_ok(request) -> bool:
    secret = settings.MESSENGER_APP_SECRET
    header = request.headers.get("X-Hub-Signature-256", "")
    if not secret or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header[len("sha256=") :], expected)


def _send_text(psid: str, text: str) -> None:
    token = settings.MESSENGER_PAGE_ACCESS_TOKEN
    if not token:
        logger.info("messenger.v1.dry-run-send", extra={"chars": len(text)})
        return
    try:
        requests.post(
            f"{settings.MESSENGER_GRAPH_API_URL}/me/messages",
            params={"access_token": token},
            json={"recipient": {"id": psid}, "messaging_type": "RESPONSE", "message": {"text": text}},
            timeout=settings.MESSENGER_SEND_TIMEOUT_MS / 1000,
        )
    except requests.RequestException as exc:
        # V1 never retried; it logs and moves on. (V2 retries and keeps what it could not send.)
        logger.warning("messenger.v1.send-failed", extra={"error": type(exc).__name__})


@csrf_exempt
def webhook_v1(request):
    if request.method == "GET":
        if (
            request.GET.get("hub.mode") == "subscribe"
            and settings.MESSENGER_VERIFY_TOKEN
            and hmac.compare_digest(
                request.GET.get("hub.verify_token", ""), settings.MESSENGER_VERIFY_TOKEN
            )
        ):
            return HttpResponse(request.GET.get("hub.challenge", ""), content_type="text/plain")
        return HttpResponseForbidden("verification failed")
    if request.method != "POST":
        return HttpResponse(status=405)
    if not _signature_ok(request):
        return HttpResponseForbidden("invalid signature")
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return HttpResponseBadRequest("malformed JSON")
    if not isinstance(body, dict) or body.get("object") != "page":
        return HttpResponse(status=404)
    for entry in body.get("entry") or []:
        for item in (entry.get("messaging") or []) if isinstance(entry, dict) else []:
            message = item.get("message") if isinstance(item, dict) else None
            if isinstance(message, dict) and message.get("text") and not message.get("is_echo"):
                _send_text(str((item.get("sender") or {}).get("id", "")), V1_REPLY)
    return HttpResponse("EVENT_RECEIVED", content_type="text/plain")
