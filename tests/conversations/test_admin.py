"""Tests of conversations/admin.py: staff list, transcript, hand-over actions, access and query counts."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.admin import render_structured
from conversations.models import Conversation, Message
from conversations.services import device_id_for, message_append
from conversations.structured import structured_from_tap
from tests.conversations.helpers import PAGE_ID, T0, at, conversation_make, messages_make

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:conversations_conversation_changelist")


def _change_url(conversation: Conversation) -> str:
    return reverse("admin:conversations_conversation_change", args=[conversation.pk])


def _conversations_bulk(count: int, *, offset: int = 0) -> None:
    Conversation.objects.bulk_create(
        Conversation(
            page_id=PAGE_ID,
            psid=f"bulk-{offset + i}",
            device_id=device_id_for(page_id=PAGE_ID, psid=f"bulk-{offset + i}"),
            started_at=T0,
            last_activity_at=at(i),
            message_count=i,
        )
        for i in range(count)
    )


def _queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_conversation_changelist_renders_for_staff(admin_client):
    """Staff see the list with sender, page, status and message count."""
    conversation_make(psid="psid-list-1")
    conversation_make(psid="psid-list-2", status=Conversation.Status.HANDED_OVER)

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    body = response.content.decode()
    assert "psid-list-1" in body and "psid-list-2" in body
    assert "Handed over to a human" in body
    assert PAGE_ID in body


def test_conversation_changelist_searches_psid_and_filters_status(admin_client):
    """Search finds a conversation by exact PSID or device id; the status filter narrows the list."""
    conversation_make(psid="psid-wanted")
    conversation_make(psid="psid-other", status=Conversation.Status.HANDED_OVER)

    by_psid = admin_client.get(CHANGELIST, {"q": "psid-wanted"}).content.decode()
    by_device = admin_client.get(
        CHANGELIST, {"q": device_id_for(page_id=PAGE_ID, psid="psid-other")}
    ).content.decode()
    by_status = admin_client.get(CHANGELIST, {"status__exact": "handed_over"}).content.decode()

    assert "psid-wanted" in by_psid and "psid-other" not in by_psid
    assert "psid-other" in by_device and "psid-wanted" not in by_device
    assert "psid-other" in by_status and "psid-wanted" not in by_status


def test_conversation_changelist_date_filter_by_last_activity(admin_client):
    """The last-activity date filter is offered and applies."""
    conversation_make(psid="psid-old", last=at(-40 * 86400))
    conversation_make(psid="psid-new", last=at(0))

    response = admin_client.get(
        CHANGELIST,
        {
            "last_activity_at__gte": at(-86400).isoformat(),
            "last_activity_at__lt": at(86400).isoformat(),
        },
    )

    body = response.content.decode()
    assert response.status_code == 200
    assert "psid-new" in body and "psid-old" not in body


def test_conversation_changelist_query_count_equal_for_10_and_10000(admin_client):
    """The list (waiting first, last user message, waiting filter, search) costs the same for 10 and 10,000."""
    _conversations_bulk(10)
    admin_client.get(CHANGELIST)  # warm per-process caches (content types, ...)
    urls = (CHANGELIST, f"{CHANGELIST}?waiting=yes", f"{CHANGELIST}?q=bulk-1")
    with_10 = [_queries_for(admin_client, url) for url in urls]

    _conversations_bulk(9990, offset=10)
    Conversation.objects.filter(psid__in=["bulk-5", "bulk-9000"]).update(waiting_since=T0)
    with_10000 = [_queries_for(admin_client, url) for url in urls]

    assert Conversation.objects.count() == 10000
    assert with_10000 == with_10
    assert with_10[0] <= 6


def test_conversation_transcript_query_count_flat_from_10_to_1000_messages(admin_client):
    """The transcript page costs the same number of queries for 10 and for 1,000 messages."""
    short = conversation_make(psid="psid-short")
    messages_make(conversation=short, count=10)
    long = conversation_make(psid="psid-long")
    messages_make(conversation=long, count=1000)
    admin_client.get(_change_url(short))

    assert _queries_for(admin_client, _change_url(short)) == _queries_for(admin_client, _change_url(long))


def test_conversation_transcript_renders_in_order_and_escaped(admin_client):
    """The transcript lists messages oldest first, read-only, with user text escaped."""
    conversation = conversation_make(psid="psid-tr")
    message_append(
        conversation=conversation, direction="in", text="<script>alert(1)</script>", created_at=at(1)
    )
    message_append(conversation=conversation, direction="out", text="second line", created_at=at(2))
    message_append(
        conversation=conversation,
        direction="in",
        text="photo",
        attachments=[{"type": "image", "payload": {"url": "https://cdn.example/p.jpg"}}],
        created_at=at(3),
    )

    response = admin_client.get(_change_url(conversation))

    body = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert body.index("alert(1)") < body.index("second line") < body.index("https://cdn.example/p.jpg")
    # Read-only but for the staff reply: saving the page only sends that (docs/people.md).
    assert 'name="staff_reply"' in body
    assert 'name="status"' not in body and 'name="psid"' not in body


def test_conversation_transcript_shows_offered_and_tapped_readably(admin_client):
    """Quick replies, buttons and cards the bot offered, and the payload the user tapped, read as text."""
    conversation = conversation_make(psid="psid-rich")
    message_append(
        conversation=conversation,
        direction="out",
        text="Pick one",
        # What the channel stores with a sent part (messenger.outbound.part_summary).
        structured={
            "quick_replies": [{"content_type": "text", "title": "Yes <b>", "payload": "ANSWER_YES"}],
            "buttons": [{"type": "web_url", "title": "Website", "url": "javascript:alert(1)"}],
            "cards": [
                {
                    "title": "Red shoe",
                    "subtitle": "Size 42",
                    "buttons": [{"type": "postback", "title": "Buy", "payload": "BUY_RED"}],
                }
            ],
        },
    )
    message_append(
        conversation=conversation,
        direction="in",
        text="Yes",
        structured=structured_from_tap(payload="ANSWER_YES", title="Yes", kind="quick_reply"),
    )

    body = admin_client.get(_change_url(conversation)).content.decode()

    assert "Quick replies:" in body and "Yes &lt;b&gt;" in body and "ANSWER_YES" in body
    assert "Buttons:" in body and "Website" in body
    assert 'href="javascript' not in body  # URLs are shown as text, never as links
    assert "Cards:" in body and "<strong>Red shoe</strong>" in body and "BUY_RED" in body
    assert "Tapped quick reply: <strong>Yes</strong>" in body
    assert "&quot;quick_replies&quot;" not in body  # rendered, not dumped as JSON


def test_render_structured_send_api_shapes_and_unknown_keys():
    """Send API bodies render as buttons/cards; unknown keys fall back to escaped JSON."""
    template = {
        "attachment": {
            "type": "template",
            "payload": {
                "template_type": "button",
                "text": "Hi",
                "buttons": [{"type": "postback", "title": "Go", "payload": "GO"}],
            },
        },
        "quick_replies": [{"content_type": "text", "title": "Later", "payload": "LATER"}],
    }

    html = str(render_structured(template))
    other = str(render_structured({"weird": "<x>"}))

    assert "Buttons:" in html and "Go" in html and "GO" in html and "Later" in html
    assert "<pre>" in other and "&lt;x&gt;" in other
    assert str(render_structured({})) == ""


def test_conversation_hand_over_action_then_give_back_action(admin_client):
    """The list actions hand conversations to a human and give them back, through the services."""
    one = conversation_make(psid="psid-act-1")
    two = conversation_make(psid="psid-act-2")

    response = admin_client.post(CHANGELIST, {"action": "hand_over", "_selected_action": [one.pk, two.pk]})
    assert response.status_code == 302
    assert set(Conversation.objects.values_list("status", flat=True)) == {"handed_over"}

    admin_client.post(CHANGELIST, {"action": "give_back", "_selected_action": [one.pk]})
    one.refresh_from_db()
    two.refresh_from_db()
    assert (one.status, two.status) == ("active", "handed_over")


def test_conversation_hand_over_action_skips_expired(admin_client):
    """Handing over an expired conversation is refused with a warning and changes nothing."""
    closed = conversation_make(psid="psid-closed", status=Conversation.Status.EXPIRED)

    response = admin_client.post(
        CHANGELIST, {"action": "hand_over", "_selected_action": [closed.pk]}, follow=True
    )

    assert "1 expired conversation(s) left unchanged" in response.content.decode()
    closed.refresh_from_db()
    assert closed.status == Conversation.Status.EXPIRED


def test_conversation_admin_anonymous_redirected_to_login(client):
    """An anonymous visitor is sent to the admin login, for the list and the transcript."""
    conversation = conversation_make(psid="psid-anon")

    for url in (CHANGELIST, _change_url(conversation)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_conversation_admin_non_staff_refused(client):
    """A logged-in user who is not staff can't see conversations or run actions."""
    conversation = conversation_make(psid="psid-nonstaff")
    user = get_user_model().objects.create_user(username="customer", password="not-staff-pw-123")
    client.force_login(user)

    listing = client.get(CHANGELIST)
    action = client.post(CHANGELIST, {"action": "hand_over", "_selected_action": [conversation.pk]})

    assert listing.status_code == 302 and listing["Location"].startswith(reverse("admin:login"))
    assert action.status_code == 302
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.ACTIVE


def test_message_admin_is_read_only(admin_client):
    """Messages are listed and viewable by staff but can't be added, changed or deleted there."""
    conversation = conversation_make(psid="psid-msg")
    message = message_append(conversation=conversation, direction="in", text="hello", fb_message_id="m.adm")

    listing = admin_client.get(reverse("admin:conversations_message_changelist"), {"q": "m.adm"})
    detail = admin_client.get(reverse("admin:conversations_message_change", args=[message.pk]))
    add = admin_client.get(reverse("admin:conversations_message_add"))

    assert listing.status_code == 200 and "hello" in listing.content.decode()
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert add.status_code == 403
    assert Message.objects.count() == 1


def test_message_changelist_query_count_equal_for_10_and_10000(admin_client):
    """The message list joins its conversation: no query per row, 10 or 10,000 messages alike."""
    conversation = conversation_make(psid="psid-many")
    messages_make(conversation=conversation, count=10)
    url = reverse("admin:conversations_message_changelist")
    admin_client.get(url)
    with_10 = _queries_for(admin_client, url)

    messages_make(conversation=conversation, count=9990, start=at(100))
    assert _queries_for(admin_client, url) == with_10


def test_conversation_changelist_shows_who_is_waiting_and_filters_them(admin_client):
    """The list has a "waiting for a person" column and filter; the filter keeps only waiting rows."""
    waiting = conversation_make(psid="psid-waiting")
    conversation_make(psid="psid-fine")
    Conversation.objects.filter(pk=waiting.pk).update(waiting_since=T0)

    everyone = admin_client.get(CHANGELIST)
    only_waiting = admin_client.get(CHANGELIST, {"waiting": "yes"})

    assert "column-waiting" in everyone.content.decode()
    assert [c.psid for c in only_waiting.context["cl"].result_list] == ["psid-waiting"]


def test_conversation_transcript_names_who_wrote_each_message(admin_client):
    """User, bot, staff member and a person elsewhere are told apart in the transcript."""
    conversation = conversation_make(psid="psid-roles")
    message_append(conversation=conversation, direction="in", text="hi")
    message_append(conversation=conversation, direction="out", text="bot here")
    message_append(conversation=conversation, direction="out", text="staff here", role="staff", author="ana")
    message_append(conversation=conversation, direction="out", text="inbox here", role="person", author="Page Inbox")

    body = admin_client.get(_change_url(conversation)).content.decode()

    for role in ("user", "bot", "staff", "person"):
        assert body.count(f'class="msg msg-{role}"') == 1
    for label in ("Staff (ana) <span", "Person (Page Inbox) <span"):
        assert label in body
