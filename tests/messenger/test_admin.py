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


def test_unreadable_rows_are_listed_and_filtered_with_their_reason(admin_client):
    """Staff find the items kept raw by filtering on the status, each with the parse problem as reason."""
    InboundMessage.objects.create(
        mid="ur.odd", page_id="p", psid="", kind="unreadable", fb_timestamp=1, raw={"sticker": {"v": 2}},
        status="unreadable", status_reason="entry[0].messaging[0] has no event key we know (sticker)",
    )
    make_row("m_fine", "answered")
    url = reverse("admin:messenger_inboundmessage_changelist")
    listing = admin_client.get(url, {"status__exact": "unreadable"})
    assert listing.status_code == 200
    assert b"ur.odd" in listing.content and b"m_fine" not in listing.content
    assert b"has no event key we know (sticker)" in listing.content
    assert b"Unreadable (kept raw, not answered)" in admin_client.get(url).content  # the filter's choice
    detail = admin_client.get(reverse("admin:messenger_inboundmessage_change",
                                      args=[InboundMessage.objects.get(mid="ur.odd").id]))
    assert detail.status_code == 200 and b"sticker" in detail.content


def test_requeue_action_leaves_unreadable_rows_alone(admin_client):
    """An unreadable row is final: the requeue action skips it and queues nothing."""
    row = make_row("ur.final", "unreadable")
    admin_client.post(
        reverse("admin:messenger_inboundmessage_changelist"),
        {"action": "requeue_selected", "_selected_action": [row.id]},
    )
    row.refresh_from_db()
    assert row.status == "unreadable" and get_queue("messenger_fast").get_job_ids() == []
