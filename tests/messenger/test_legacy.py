"""The legacy V1 webhook keeps its production behaviour, and V2's processing is reachable only via V2."""

from __future__ import annotations

import inspect
import json

import pytest
import responses
from django.test import override_settings
from django.urls import resolve

from messenger import legacy, views
from messenger.models import InboundMessage
from messenger.queues import get_queue
from tests.conftest import fixture_bytes, sign

V1 = "/messenger/webhook"
GRAPH = "https://graph.facebook.com/v25.0/me/messages"
pytestmark = pytest.mark.django_db


def post_v1(client, body: bytes, signature: str | None = None):
    return client.post(V1, data=body, content_type="application/json",
                       HTTP_X_HUB_SIGNATURE_256=signature if signature is not None else sign(body))


def test_v1_verification_echoes_challenge(client):
    """V1's verification GET answers the challenge with the right token and 403 otherwise."""
    ok = client.get(V1, {"hub.mode": "subscribe", "hub.verify_token": "test-verify-token", "hub.challenge": "42"})
    bad = client.get(V1, {"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "42"})
    assert (ok.status_code, ok.content) == (200, b"42")
    assert bad.status_code == 403


@override_settings(MESSENGER_PAGE_ACCESS_TOKEN="EAAv1token")
def test_v1_answers_text_synchronously_without_retries(client):
    """V1 sends its fixed reply inside the request, once, even when Facebook fails."""
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, GRAPH, status=500, json={"error": {"code": 2}})
        response = post_v1(client, fixture_bytes("text_message"))
        assert len(mock.calls) == 1
        sent = json.loads(mock.calls[0].request.body)
    assert response.status_code == 200 and response.content == b"EVENT_RECEIVED"
    assert sent["message"] == {"text": legacy.V1_REPLY}
    assert sent["recipient"] == {"id": "29089347883997073"}


def test_v1_refuses_bad_signature(client):
    """V1 refuses an unsigned or wrongly signed POST."""
    assert post_v1(client, fixture_bytes("text_message"), signature="sha256=" + "0" * 64).status_code == 403


def test_processor_only_wired_to_v2_endpoint(client):
    """Only /messenger/v2/webhook reaches the inbox and the queues; V1 keeps nothing and queues nothing."""
    assert resolve("/messenger/v2/webhook").func.view_class is views.WebhookV2View
    assert resolve(V1).func is legacy.webhook_v1
    source = inspect.getsource(legacy)
    for v2_module in ("messenger.inbox", "messenger.pipeline", "messenger.jobs", "messenger.send_api"):
        assert v2_module not in source

    post_v1(client, fixture_bytes("text_message"))
    assert InboundMessage.objects.count() == 0
    assert get_queue("messenger_fast").count == 0

    body = fixture_bytes("text_message")
    client.post("/messenger/v2/webhook", data=body, content_type="application/json",
                HTTP_X_HUB_SIGNATURE_256=sign(body))
    assert InboundMessage.objects.count() == 1
    assert get_queue("messenger_fast").count == 1
