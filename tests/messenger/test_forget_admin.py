"""The admin action "Forget these users", on the inbox list and on the conversation list."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from conversations.models import Conversation
from messenger.models import InboundMessage
from observability.hashing import hash_psid
from tests.messenger.helpers import stored_everywhere, user_footprint

pytestmark = pytest.mark.django_db

PAGE = "1122334455"
PSID = "7000000000000001"
OTHER = "7000000000000002"
INBOX = "admin:messenger_inboundmessage_changelist"
CONVERSATIONS = "admin:conversations_conversation_changelist"


@pytest.mark.parametrize(("changelist", "model"), [(INBOX, InboundMessage), (CONVERSATIONS, Conversation)])
def test_forget_action_asks_first_then_deletes_everything(admin_client, redis_conn, caplog, changelist, model):
    made = user_footprint(page_id=PAGE, psid=PSID, conversations=2)
    user_footprint(page_id=PAGE, psid=OTHER)
    selected = list(model.objects.filter(psid=PSID).values_list("id", flat=True))
    url = reverse(changelist)

    asked = admin_client.post(url, {"action": "forget_users", "_selected_action": selected})
    assert asked.status_code == 200
    assert b"Forget these users?" in asked.content and PSID.encode() in asked.content
    assert PSID in stored_everywhere()  # nothing deleted before confirming

    with caplog.at_level(logging.INFO):
        done = admin_client.post(url, {"action": "forget_users", "_selected_action": selected, "confirm": "yes"})
    assert done.status_code == 302
    assert PSID not in stored_everywhere() and hash_psid(PSID) not in stored_everywhere()
    assert not any(redis_conn.exists(key) for key in made["cache_keys"])
    assert OTHER in stored_everywhere()
    [audit] = [r for r in caplog.records if r.getMessage() == "messenger.forget.done"]
    assert audit.actor == "admin" and audit.inbound == 2 and audit.events == 4
    assert PSID not in caplog.text and hash_psid(PSID) not in caplog.text
    message = [m.message for m in done.wsgi_request._messages]
    assert message == [
        "Forgot 1 user(s): deleted 2 inbound, 2 parts, 2 conversations, 4 messages, 2 cache_keys, 4 events."
    ]


def test_forget_action_needs_the_delete_permission(client):
    user_footprint(page_id=PAGE, psid=PSID)
    staff = User.objects.create_user("viewer", password="pw", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_conversation", "change_conversation"]))
    client.force_login(staff)
    selected = list(Conversation.objects.values_list("id", flat=True))
    client.post(reverse(CONVERSATIONS), {"action": "forget_users", "_selected_action": selected, "confirm": "yes"})
    assert PSID in stored_everywhere()
