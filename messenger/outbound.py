"""What one outbound part says, read from its Send API ``message`` body: the one reader of that shape.

``messenger.formatter`` builds the bodies (text messages, a button template, a generic template,
quick replies riding on the last part) and ``OutboundPart.body`` stores them as sent. Everything
that shows a reply to a person reads a part through :func:`part_summary` rather than the body:
the transcript (``messenger.delivery`` stores the summary with each sent part, so the conversations
admin renders the stored record and never a Send API body) and ``manage.py messenger_simulate``.

The ``structured`` record is the one ``conversations.Message.structured`` holds for an outbound
message: ``quick_replies``, ``buttons`` and ``cards`` as the Send API carries them (quick replies
``{"content_type", "title", "payload"}``, buttons ``{"type", "title", "payload" | "url"}``, cards the
generic template's ``elements``); keys the part has nothing for are left out.
"""

from __future__ import annotations


def part_summary(body: dict) -> tuple[str, dict]:
    """The transcript text and structured record of one Send API message body.

    The text is the message's text, or a button template's text; a generic template (cards) has
    none, nor has an attachment that is not a template. Never raises for a body of another shape.
    """
    structured: dict = {}
    if body.get("quick_replies"):
        structured["quick_replies"] = body["quick_replies"]
    attachment = body.get("attachment") or {}
    payload = attachment.get("payload") or {}
    if payload.get("template_type") == "button":
        structured["buttons"] = payload.get("buttons", [])
        return payload.get("text", ""), structured
    if payload.get("template_type") == "generic":
        structured["cards"] = payload.get("elements", [])
        return "", structured
    return body.get("text", ""), structured
