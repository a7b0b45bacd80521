"""Facebook's limits on what one Send API message may carry, each stated once with its source.

Everything in this app that shapes an outgoing message reads them from here: the formatter fits
every reply within them and degrades what does not fit (``messenger/formatter.py``). The chat engine
checks its rules file against the structural ones when it loads it, so staff hear about an answer
Messenger would refuse before anyone sees it degraded; the engine sits below this app and may not
import it, so the app hands them down as :data:`REPLY_LIMITS` when it is ready (``messenger/apps.py``).

As documented (looked up 2026). "Characters" is Facebook's word and Facebook does not define it: we
count Unicode code points (Python's ``len``), the natural unit of a UTF-8 string. Should Facebook count
UTF-16 code units instead, a text made almost entirely of astral characters (emoji) could exceed the
limit in its count; text written by people and models is nowhere near that, and the Send API client
reports such a refusal as a permanent error.
"""

from __future__ import annotations

from engine.types import ReplyLimits

# Text message: "Must be UTF-8 and has a 2000 character limit. text or attachment must be set."
# https://developers.facebook.com/docs/messenger-platform/reference/send-api/
MAX_TEXT_CHARS = 2000

# Quick replies: at most 13; ``title`` "20 character limit" (required for ``content_type`` text);
# ``payload`` "1000 character limit".
# https://developers.facebook.com/docs/messenger-platform/reference/buttons/quick-replies and
# https://developers.facebook.com/documentation/business-messaging/messenger-platform/send-messages/quick-replies
MAX_QUICK_REPLIES = 13
QUICK_REPLY_TITLE_CHARS = 20

# Postback button and quick reply: ``payload`` "1000 character limit".
# https://developers.facebook.com/documentation/business-messaging/messenger-platform/send-messages/buttons/postback
PAYLOAD_CHARS = 1000

# Button template: ``text`` "UTF-8-encoded text of up to 640 characters"; ``buttons`` "Set of 1-3 buttons".
# https://developers.facebook.com/documentation/business-messaging/messenger-platform/send-messages/template/button
BUTTON_TEMPLATE_TEXT_CHARS = 640
MAX_BUTTONS = 3

# Postback and URL buttons: ``title`` "20 character limit".
# https://developers.facebook.com/documentation/business-messaging/messenger-platform/send-messages/buttons/postback
# https://developers.facebook.com/documentation/business-messaging/messenger-platform/send-messages/buttons/url
BUTTON_TITLE_CHARS = 20

# Generic template: "Maximum of 10 elements"; ``title`` and ``subtitle`` "80 character limit"; up to
# three buttons per element; "At least one property must be set in addition to title".
# https://developers.facebook.com/documentation/business-messaging/messenger-platform/send-messages/template/generic
MAX_CARDS = 10
CARD_TITLE_CHARS = 80
CARD_SUBTITLE_CHARS = 80
MAX_CARD_BUTTONS = 3

# What the chat engine checks its rules file against (registered in MessengerConfig.ready).
REPLY_LIMITS = ReplyLimits(
    channel="Messenger",
    quick_replies=MAX_QUICK_REPLIES,
    buttons=MAX_BUTTONS,
    card_buttons=MAX_CARD_BUTTONS,
    cards=MAX_CARDS,
)
