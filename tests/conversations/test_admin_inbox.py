"""Tests of conversations/admin.py as a staff inbox (issue 17): the waiting queue, search, the chat
transcript, the take-over and give-back buttons with their history, and no Delete.

(The list's flat query count and the older admin behaviour are in ``test_admin.py``.)
"""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from conversations.models import Conversation, Message
from conversations.services import message_append
from conversations.staff_handlers import TranscriptMarker
from conversations.transcript import render_marker
from tests.conversations.helpers import T0, at, conversation_make

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:conversations_conversation_changelist")


def _change_url(conversation: Conversation) -> str:
    return reverse("admin:conversations_conversation_change", args=[conversation.pk])


def _listed_psids(response) -> list[str]:
    return [c.psid for c in response.context["cl"].result_list]


def test_changelist_lists_waiting_first_longest_wait_on_top(admin_client):
    """Waiting conversations come first, oldest wait first, then the rest by latest activity."""
    conversation_make(psid="psid-recent", last=at(500))
    late = conversation_make(psid="psid-waits-since-200", last=at(10))
    early = conversation_make(psid="psid-waits-since-100", last=at(20))
    Conversation.objects.filter(pk=late.pk).update(waiting_since=at(200))
    Conversation.objects.filter(pk=early.pk).update(waiting_since=at(100))

    response = admin_client.get(CHANGELIST)

    assert _listed_psids(response) == ["psid-waits-since-100", "psid-waits-since-200", "psid-recent"]


def test_changelist_shows_last_user_message_and_waiting_since(admin_client):
    """Each row has the user's last message (not the bot's) and when the wait began, with seconds."""
    conversation = conversation_make(psid="psid-last")
    message_append(conversation=conversation, direction="in", text="where is my order 4711?")
    message_append(conversation=conversation, direction="out", text="Let me check.")
    Conversation.objects.filter(pk=conversation.pk).update(waiting_since=T0)

    body = admin_client.get(CHANGELIST).content.decode()

    assert "where is my order 4711?" in body
    assert "Let me check." not in body
    assert "2026-01-05 12:00:00" in body


def test_admin_index_shows_waiting_count(admin_client):
    """The admin index says how many conversations wait for a person, linking to the filtered list."""
    for psid in ("psid-w1", "psid-w2"):
        Conversation.objects.filter(pk=conversation_make(psid=psid).pk).update(waiting_since=T0)
    conversation_make(psid="psid-not-waiting")

    body = admin_client.get(reverse("admin:index")).content.decode()

    assert "<strong>2</strong> conversations waiting for a person" in body
    assert f"{CHANGELIST}?waiting=yes" in body


@pytest.mark.parametrize("term", ["order 4711", "ORDER 47", "1130-88", "4712"])
def test_changelist_search_by_text_or_partial_psid_finds_the_conversation(admin_client, term):
    """A word of any message of the conversation, or part of its PSID, finds it (and only it)."""
    wanted = conversation_make(psid="2471130-88-4712")
    message_append(conversation=wanted, direction="in", text="Where is my order 4711, please?")
    message_append(conversation=wanted, direction="in", text="second message")
    other = conversation_make(psid="9990000")
    message_append(conversation=other, direction="in", text="nothing to see")

    response = admin_client.get(CHANGELIST, {"q": term})

    assert _listed_psids(response) == ["2471130-88-4712"]


def test_changelist_search_short_term_matches_whole_psid_only(admin_client):
    """Under three characters a trigram index can't help: only an exact PSID matches, no scan."""
    conversation_make(psid="12")
    conversation_make(psid="3124")

    assert _listed_psids(admin_client.get(CHANGELIST, {"q": "12"})) == ["12"]


def test_transcript_is_a_chat_with_roles_apart_and_ids_muted(admin_client):
    """User left, bot right, each in its own bubble; the text is escaped; ids sit in the muted line."""
    conversation = conversation_make(psid="psid-chat")
    message_append(conversation=conversation, direction="in", text="<b>hi</b>", fb_message_id="m.chat.1")
    message_append(conversation=conversation, direction="out", text="Hello!")

    body = admin_client.get(_change_url(conversation)).content.decode()

    assert 'class="msg msg-user" style="display:flex;justify-content:flex-start' in body
    assert 'class="msg msg-bot" style="display:flex;justify-content:flex-end' in body
    assert "&lt;b&gt;hi&lt;/b&gt;" in body
    assert '<div style="color:#888;font-size:11px">m.chat.1</div>' in body


def test_render_marker_shows_reason_trace_id_and_inbound_link():
    """A marker says what happened in words, Facebook's trace id and where the inbound row is."""
    marker = TranscriptMarker(
        kind="failed", label="Failed", reason="The user can't receive messages.", fbtrace_id="G3GRmtpZiq6", url="/x/1/"
    )

    html = str(render_marker(marker))

    assert '<strong style="color:#d93025">Failed</strong>: The user can&#x27;t receive messages.' in html
    assert "Facebook trace id <code>G3GRmtpZiq6</code>" in html
    assert '<a href="/x/1/">inbound row</a>' in html


def test_take_over_button_hands_over_logs_and_notes(admin_client, admin_user):
    """The page's "Take over" button: handed over, a LogEntry naming the action and a transcript note."""
    conversation = conversation_make(psid="psid-take")
    change = _change_url(conversation)
    assert 'id="take-over"' in admin_client.get(change).content.decode()

    response = admin_client.post(reverse("admin:conversations_conversation_take_over", args=[conversation.pk]))

    assert (response.status_code, response["Location"]) == (302, change)
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.HANDED_OVER
    entry = LogEntry.objects.get(object_id=str(conversation.pk))
    assert (entry.user, entry.change_message) == (admin_user, "Taken over by staff: the bot stops answering.")
    note = conversation.messages.get(role=Message.Role.NOTE)
    assert (note.text, note.author) == ("Taken over by staff (admin).", "admin")


def test_give_back_button_returns_to_bot_logs_and_notes(admin_client, admin_user):
    """The page's "Give back" button: active, not waiting, a LogEntry and a "Given back" note."""
    conversation = conversation_make(psid="psid-back", status=Conversation.Status.HANDED_OVER)
    Conversation.objects.filter(pk=conversation.pk).update(waiting_since=T0)

    admin_client.post(reverse("admin:conversations_conversation_give_back", args=[conversation.pk]))

    conversation.refresh_from_db()
    assert (conversation.status, conversation.waiting_since) == ("active", None)
    entry = LogEntry.objects.get(object_id=str(conversation.pk))
    assert (entry.user, entry.change_message) == (admin_user, "Given back to the bot: it answers again.")
    assert list(conversation.messages.filter(role="note").values_list("text", flat=True)) == ["Given back to the bot."]


def test_take_over_button_refuses_get(admin_client):
    """A GET never changes who has the conversation (only the page's POST form does)."""
    conversation = conversation_make(psid="psid-get")

    response = admin_client.get(reverse("admin:conversations_conversation_take_over", args=[conversation.pk]))

    assert response.status_code == 405
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.ACTIVE


def test_conversation_has_no_delete_for_anyone(admin_client):
    """No Delete link and the delete page is refused: erasing a user is messenger_forget's job."""
    conversation = conversation_make(psid="psid-keep")

    page = admin_client.get(_change_url(conversation)).content.decode()
    delete = admin_client.post(
        reverse("admin:conversations_conversation_delete", args=[conversation.pk]), {"post": "yes"}
    )

    assert "deletelink" not in page
    assert delete.status_code == 403
    assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_staff_reply_box_says_how_the_reply_will_go(admin_client):
    """Under the transcript, the box says whether a reply goes normally, as HUMAN_AGENT, or not at all."""
    conversation = conversation_make(psid="psid-never-wrote")
    message_append(conversation=conversation, direction="out", text="A note the bot kept.")

    body = admin_client.get(_change_url(conversation)).content.decode()

    assert body.index('class="transcript"') < body.index('class="reply-policy"') < body.index('name="staff_reply"')
    assert "Can&#x27;t be sent: The user has never written to the page" in body
