"""The inbox admin: staff see every kept message and its reply parts, can requeue open ones; others can't."""

from __future__ import annotations

import pytest
from django.urls import reverse

from messenger.models import InboundMessage, OutboundPart
from messenger.queues import get_queue

pytestmark = pytest.mark.django_db


def make_row(mid: str, status: str) -> InboundMessage:
    return InboundMessage.objects.create(
        mid=mid, page_id="p", psid="1256217357730577", kind="text", text="hello", fb_timestamp=1,
        status=status, queue_name="messenger_fast",
    )


def test_inbox_list_and_detail_render_for_staff(admin_client):
    """Staff see the list with statuses and a message's page with its reply parts."""
    row = make_row("m_admin_1", "answered")
    OutboundPart.objects.create(inbound=row, position=0, body={"text": "Hi there"}, status="sent")
    listing = admin_client.get(reverse("admin:messenger_inboundmessage_changelist"))
    assert listing.status_code == 200 and b"m_admin_1" in listing.content
    detail = admin_client.get(reverse("admin:messenger_inboundmessage_change", args=[row.id]))
    assert detail.status_code == 200 and b"Hi there" in detail.content


def test_inbox_admin_refuses_anonymous_users(client):
    """Without a staff login the inbox admin redirects to the login page."""
    response = client.get(reverse("admin:messenger_inboundmessage_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_requeue_action_queues_open_messages_only(admin_client):
    """The requeue action queues a failed-to-queue (pending) message and leaves an answered one alone."""
    pending, answered = make_row("m_pending", "pending"), make_row("m_done", "answered")
    response = admin_client.post(
        reverse("admin:messenger_inboundmessage_changelist"),
        {"action": "requeue_selected", "_selected_action": [pending.id, answered.id]},
    )
    assert response.status_code == 302
    pending.refresh_from_db()
    answered.refresh_from_db()
    assert pending.status == "queued" and answered.status == "answered"
    assert get_queue("messenger_fast").get_job_ids() == [pending.job_id]
