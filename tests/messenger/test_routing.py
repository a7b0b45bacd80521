"""Routing: which queue and job timeout each inbound message gets (the seed's table 48.2)."""

from __future__ import annotations

import pytest
from django.test import override_settings
from rq.job import Job

from messenger.inbox import job_id_for
from messenger.models import InboundMessage
from messenger.queues import get_queue
from messenger.routing import route_for
from tests.conftest import load_fixture

pytestmark = pytest.mark.django_db


def _job(row: InboundMessage) -> Job:
    return Job.fetch(job_id_for(row.id), connection=get_queue(row.queue_name).connection)


def test_short_text_goes_to_fast_queue():
    """A text under 200 characters is routed to messenger_fast with the short job timeout."""
    route = route_for(kind="text", text="hi", has_attachments=False)
    assert (route.queue, route.reason) == ("messenger_fast", "short-text")


def test_long_message_uses_background_task(post_webhook):
    """A text of 200 characters or more is queued as a background job on messenger_fast with a longer timeout."""
    body = load_fixture("text_message")
    body["entry"][0]["messaging"][0]["message"]["text"] = "a" * 200
    post_webhook(body)
    row = InboundMessage.objects.get()
    job = _job(row)
    assert job.origin == "messenger_fast"
    short = route_for(kind="text", text="a" * 199, has_attachments=False)
    assert job.timeout == route_for(kind="text", text="a" * 200, has_attachments=False).job_timeout > short.job_timeout


def test_attachment_queued_for_async_processing(post_webhook):
    """An attachment message is queued on messenger_slow, never answered in the request."""
    response = post_webhook("image_attachment")
    assert response.status_code == 200
    row = InboundMessage.objects.get()
    assert row.queue_name == "messenger_slow"
    assert row.status == InboundMessage.Status.QUEUED
    assert get_queue("messenger_slow").get_job_ids() == [job_id_for(row.id)]
    assert get_queue("messenger_fast").count == 0
    assert not row.parts.exists()


@override_settings(MESSENGER_LONG_TEXT_CHARS=10)
def test_long_text_threshold_is_a_setting():
    """MESSENGER_LONG_TEXT_CHARS moves the long-text threshold."""
    assert route_for(kind="text", text="a" * 10, has_attachments=False).reason == "long-text"
    assert route_for(kind="text", text="a" * 9, has_attachments=False).reason == "short-text"


def test_job_timeouts_exceed_processing_and_send_budget():
    """rq's hard limit stays above the pipeline's own timeouts, so the fallback and deferral act first."""
    route = route_for(kind="text", text="hi", has_attachments=False)
    assert route.job_timeout > 15 + 4 * 5 + (4 + 8 + 16)
