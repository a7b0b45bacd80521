"""Which webhook fixture (``tests/fixtures/messenger/<name>.json``) holds which kind of event.

Shared by the parser's tests (every kind the dispatch table knows has a fixture, and parses as that
kind) and the webhook's (actionable kinds are kept and queued, the rest acknowledged and ignored).
"""

from __future__ import annotations

from messenger.models import InboundMessage
from messenger.parsing import EventKind

ACTIONABLE_FIXTURES = {
    "text_message": InboundMessage.Kind.TEXT,
    "text_message_legacy": InboundMessage.Kind.TEXT,
    "quick_reply": InboundMessage.Kind.QUICK_REPLY,
    "postback": InboundMessage.Kind.POSTBACK,
    "postback_get_started": InboundMessage.Kind.POSTBACK,
    "image_attachment": InboundMessage.Kind.ATTACHMENTS,
    "audio_attachment": InboundMessage.Kind.ATTACHMENTS,
    "video_attachment": InboundMessage.Kind.ATTACHMENTS,
    "file_attachment": InboundMessage.Kind.ATTACHMENTS,
    "location_attachment": InboundMessage.Kind.ATTACHMENTS,
    "fallback_attachment": InboundMessage.Kind.ATTACHMENTS,
    "multi_attachment": InboundMessage.Kind.ATTACHMENTS,
    "sticker_like": InboundMessage.Kind.ATTACHMENTS,
}
IGNORED_FIXTURES = {
    "echo": EventKind.ECHO,
    "delivery": EventKind.DELIVERY,
    "read": EventKind.READ,
    "reaction": EventKind.REACTION,
    "reaction_unreact": EventKind.REACTION,
    "referral": EventKind.REFERRAL,
    "optin": EventKind.OPTIN,
    "standby": EventKind.STANDBY,
    "pass_thread_control": EventKind.PASS_THREAD_CONTROL,
    "take_thread_control": EventKind.TAKE_THREAD_CONTROL,
    "request_thread_control": EventKind.REQUEST_THREAD_CONTROL,
    "account_linking": EventKind.ACCOUNT_LINKING,
    "policy_enforcement": EventKind.POLICY_ENFORCEMENT,
    "app_roles": EventKind.APP_ROLES,
    "game_play": EventKind.GAME_PLAY,
    "message_edit": EventKind.MESSAGE_EDIT,
    "unknown_event": EventKind.UNKNOWN,
}
