"""What several messenger test modules share."""

from __future__ import annotations


def sentences(count: int, *, words: int = 12) -> str:
    """``count`` distinct numbered sentences of ``words`` words each, separated by spaces."""
    return " ".join(f"Sentence {i} " + " ".join(["word"] * (words - 2)) + "." for i in range(count))


def user_footprint(*, page_id: str, psid: str, conversations: int = 1) -> dict:
    """Everything the channel stores about one user: inbox rows with parts, conversations with
    messages and a cached history, and observability events. Returns the ids made, per kind."""
    from django.utils import timezone

    from conversations import cache
    from conversations.models import Conversation, Message
    from conversations.services import device_id_for
    from messenger.models import InboundMessage, OutboundPart
    from observability.services import event_record

    made: dict = {"inbound": [], "conversations": [], "cache_keys": []}
    for number in range(conversations):
        talk = Conversation.objects.create(
            page_id=page_id,
            psid=psid,
            device_id=device_id_for(page_id=page_id, psid=psid),
            status="expired" if number < conversations - 1 else "active",
        )
        Message.objects.bulk_create(
            [
                Message(conversation=talk, direction="in", text="hi"),
                Message(conversation=talk, direction="out", text="yo"),
            ]
        )
        cache.history_prime_empty(conversation_id=talk.id)
        made["conversations"].append(talk.id)
        made["cache_keys"].append(cache.history_key(conversation_id=talk.id))
        row = InboundMessage.objects.create(
            mid=f"m_{page_id}_{psid}_{number}",
            page_id=page_id,
            psid=psid,
            kind="text",
            text="hi",
            raw={"sender": {"id": psid}, "message": {"text": "hi"}},
            fb_timestamp=number,
            received_at=timezone.now(),
            status="answered",
            conversation=talk,
        )
        OutboundPart.objects.create(inbound=row, position=0, body={"text": "yo"}, status="sent")
        made["inbound"].append(row.id)
        event_record(event_type="message_received", inbound=row)
        event_record(event_type="response_sent", inbound=row, latency_ms=5)
    return made


def stored_everywhere() -> str:
    """Every row of the channel's apps, serialised: a PSID or hash in here is still stored somewhere."""
    from django.apps import apps
    from django.core import serializers

    models = [
        model
        for label in ("messenger", "conversations", "observability")
        for model in apps.get_app_config(label).get_models()
    ]
    return "".join(serializers.serialize("json", model.objects.all()) for model in models)
