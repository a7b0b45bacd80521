"""Tests for messenger/management/commands/messenger_simulate.py: talking to the bot from a terminal."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from messenger.management.commands.messenger_simulate import render_part
from messenger.models import InboundMessage

pytestmark = pytest.mark.django_db


def _simulate(*args: str) -> str:
    out = StringIO()
    call_command("messenger_simulate", *args, stdout=out)
    return out.getvalue()


def test_text_goes_through_the_signed_webhook_and_the_reply_is_printed():
    """The message is kept by the real webhook (so it was signed right), answered, and shown as a chat."""
    output = _simulate("hello", "--psid", "1000000000000042")
    row = InboundMessage.objects.get(psid="1000000000000042")
    assert row.status == InboundMessage.Status.ANSWERED and row.mid.startswith("m_sim_")
    assert output.startswith("you> hello\nbot> ")
    assert f"[answered; intent={row.intent}; dry-run]" in output


def test_json_prints_the_send_api_bodies():
    """``--json`` prints the reply parts exactly as they would be sent."""
    parts = json.loads(_simulate("hello", "--json"))
    row = InboundMessage.objects.get()
    assert parts == [part.body for part in row.parts.order_by("position")]
    assert parts and all("text" in part or "attachment" in part for part in parts)


def test_postback_is_sent_as_a_postback():
    """``--postback`` sends the button's payload, which the inbox keeps as a postback."""
    _simulate("Show the menu", "--postback", "MENU")
    row = InboundMessage.objects.get()
    assert (row.kind, row.payload) == (InboundMessage.Kind.POSTBACK, "MENU")


def test_render_part_shows_text_buttons_cards_and_quick_replies():
    """Every kind of part the formatter makes has a terminal rendering."""
    assert render_part({"text": "hi", "quick_replies": [{"title": "Yes"}, {"title": "No"}]}) == [
        "hi", "  quick replies: [Yes]  [No]",
    ]
    button = {"attachment": {"payload": {"template_type": "button", "text": "Pick",
                                         "buttons": [{"title": "Site", "url": "https://x.example"}]}}}
    assert render_part(button) == ["Pick", "  [Site] -> https://x.example"]
    card = {"attachment": {"payload": {"template_type": "generic", "elements": [
        {"title": "Card", "subtitle": "sub", "buttons": [{"title": "Go", "payload": "GO"}]},
    ]}}}
    assert render_part(card) == ["  | Card - sub", "  |   [Go] -> GO"]


@pytest.mark.django_db(transaction=True)
def test_message_a_running_worker_took_first_is_shown_once_that_worker_answers(monkeypatch):
    """A running worker held the sender first (its job was queued by the same webhook call): the
    command waits for that worker's answer and prints it, instead of "no reply: Queued"."""
    import threading
    import time

    from django.db import connections

    from messenger.management.commands import messenger_simulate as command
    from messenger.pipeline import sender_drain

    def worker_took_it(*, inbound_id, worker_name):
        def answer():
            time.sleep(0.3)
            sender_drain(inbound_id=inbound_id, worker_name="a-running-worker")
            connections.close_all()

        threading.Thread(target=answer).start()
        return "left-to-holder"

    monkeypatch.setattr(command, "sender_drain", worker_took_it)
    output = _simulate("hello", "--psid", "1000000000000043")
    row = InboundMessage.objects.get(psid="1000000000000043")
    assert row.worker_name == "a-running-worker" and row.status == InboundMessage.Status.ANSWERED
    assert output.startswith("you> hello\nbot> ")
    assert f"[answered; intent={row.intent}; dry-run]" in output
