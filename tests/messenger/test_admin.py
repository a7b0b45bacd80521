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


# --- the staff inbox (issue 17): read-only pages, search, flat lists ---------------------------------


def _staff_client(client, *codenames: str):
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user("support", password="pw-support-123", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    return client


def _read_only_rows():
    from conversations.models import Conversation, Message
    from messenger.models import StaffReply
    from observability.models import Event

    conversation = Conversation.objects.create(page_id="p", psid="1256217357730577", device_id="d")
    inbound = make_row("m_ro", "answered")
    return {
        "messenger_inboundmessage": inbound,
        "messenger_staffreply": StaffReply.objects.create(
            conversation=conversation, page_id="p", psid="1256217357730577", text="hi", author="ana"
        ),
        "conversations_message": Message.objects.create(conversation=conversation, direction="in", text="hi"),
        "observability_event": Event.objects.create(event_type="message_received"),
    }


@pytest.mark.parametrize(
    ("model", "view", "change", "delete"),
    [
        ("messenger_inboundmessage", "view_inboundmessage", "change_inboundmessage", "delete_inboundmessage"),
        ("messenger_staffreply", "view_staffreply", "change_staffreply", "delete_staffreply"),
        ("conversations_message", "view_message", "change_message", "delete_message"),
        ("observability_event", "view_event", "change_event", "delete_event"),
    ],
)
def test_read_only_models_refuse_change_and_delete_to_staff(client, model, view, change, delete):
    """Even with Django's change and delete permissions, staff get no Save, and POSTs are refused."""
    row = _read_only_rows()[model]
    staff = _staff_client(client, view, change, delete)
    change_url = reverse(f"admin:{model}_change", args=[row.pk])

    page = staff.get(change_url)
    saved = staff.post(change_url, {})
    deleted = staff.post(reverse(f"admin:{model}_delete", args=[row.pk]), {"post": "yes"})

    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert "deletelink" not in page.content.decode()
    assert (saved.status_code, deleted.status_code) == (403, 403)
    assert type(row).objects.filter(pk=row.pk).exists()


@pytest.mark.parametrize("term", ["where is my parcel", "PARCEL", "7357730", "m_search_1"])
def test_inbox_search_by_text_partial_psid_or_mid_finds_the_row(admin_client, term):
    """The inbound list is searched by a word of the text, part of the PSID or the exact mid."""
    wanted = make_row("m_search_1", "answered")
    InboundMessage.objects.filter(pk=wanted.pk).update(text="Hi, where is my parcel?")
    InboundMessage.objects.create(
        mid="m_search_2", page_id="p", psid="999000111", kind="text", text="other", fb_timestamp=1
    )

    response = admin_client.get(reverse("admin:messenger_inboundmessage_changelist"), {"q": term})

    assert [r.mid for r in response.context["cl"].result_list] == ["m_search_1"]


def test_inbox_list_shows_psid_text_and_conversation_link(admin_client):
    """Each row shows the PSID, the text and a link to its conversation's page."""
    from conversations.models import Conversation

    conversation = Conversation.objects.create(page_id="p", psid="1256217357730577", device_id="d")
    row = make_row("m_link", "answered")
    InboundMessage.objects.filter(pk=row.pk).update(conversation=conversation, text="where is my parcel")

    body = admin_client.get(reverse("admin:messenger_inboundmessage_changelist")).content.decode()

    assert "1256217357730577" in body and "where is my parcel" in body
    link = reverse("admin:conversations_conversation_change", args=[conversation.pk])
    assert f'<a href="{link}">#{conversation.pk}</a>' in body


def _queries(client, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def _inbound_bulk(count: int, offset: int) -> None:
    InboundMessage.objects.bulk_create(
        InboundMessage(
            mid=f"m_bulk_{offset + i}", page_id="p", psid=f"{offset + i}", kind="text", text=f"text {i}",
            fb_timestamp=1, status="answered",
        )
        for i in range(count)
    )


def test_inbox_and_event_lists_query_count_equal_for_10_and_10000(admin_client):
    """The inbound and event lists (with their filters) cost the same queries for 10 and 10,000 rows."""
    from observability.models import Event

    def events(count: int) -> None:
        Event.objects.bulk_create(Event(event_type="message_received", mid=f"m{i}") for i in range(count))

    inbox = reverse("admin:messenger_inboundmessage_changelist")
    event_list = reverse("admin:observability_event_changelist")
    urls = (inbox, f"{inbox}?recent=day&status__exact=answered", event_list, f"{event_list}?recent=hour")
    _inbound_bulk(10, 0)
    events(10)
    admin_client.get(inbox)
    with_10 = [_queries(admin_client, url) for url in urls]

    _inbound_bulk(9990, 10)
    events(9990)
    with_10000 = [_queries(admin_client, url) for url in urls]

    assert InboundMessage.objects.count() == Event.objects.count() == 10000
    assert with_10000 == with_10
