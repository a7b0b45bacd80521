"""Every user-facing wording of the Messenger channel, in one place.

Staff change the bot's voice here, not in the modules that decide *when* a text is said
(``attachments``, ``formatter``, the jobs). The constants are plain strings on purpose: no
markdown (the formatter would strip it), each short enough to be the text of a button template
(640 characters) and far below a text message's 2,000 characters, which the tests check.
"""

from __future__ import annotations

# Attachments (messenger/attachments.py).
IMAGE_RECEIVED = (
    "Thanks for the picture! I can't look at images yet, so please tell me in words how I can help."
)
STICKER_RECEIVED = "Glad to hear from you! 👍 Is there anything I can help you with?"
ATTACHMENT_UNSUPPORTED = (
    "Sorry, I can't open audio, video or files here. Could you type your question instead?"
)

# The pipeline (messenger jobs).
PROCESSING_TIMEOUT = (
    "Sorry, this is taking longer than expected. Please try again in a moment, or rephrase your question."
)
SEND_FALLBACK_ERROR = "Sorry, something went wrong on our side. Please try again in a moment."

# Told to the user when staff take the conversation over (human handover).
HANDOVER_NOTICE = "I've passed our conversation to a member of the team. They will reply here shortly."

# The formatter (messenger/formatter.py).
TRUNCATION_ELLIPSIS = "…"
# The text of a button template when the reply's own text cannot carry the buttons (it is empty or
# longer than the template's 640 characters and was sent as ordinary messages before it).
BUTTONS_PROMPT = "What would you like to do next?"
