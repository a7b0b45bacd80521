"""Tests for messenger/texts.py: every user-facing wording can be sent as it is."""

from __future__ import annotations

import pytest

from messenger import texts
from messenger.limits import BUTTON_TEMPLATE_TEXT_CHARS
from messenger.markdown import strip_markdown

WORDINGS = {
    name: value
    for name, value in vars(texts).items()
    if name.isupper() and isinstance(value, str) and name != "TRUNCATION_ELLIPSIS"
}


def test_texts_module_defines_the_wordings_others_use():
    """The names the pipeline and handlers import exist."""
    for name in (
        "IMAGE_RECEIVED",
        "STICKER_RECEIVED",
        "ATTACHMENT_UNSUPPORTED",
        "PROCESSING_TIMEOUT",
        "SEND_FALLBACK_ERROR",
        "HANDOVER_NOTICE",
        "BUTTONS_PROMPT",
    ):
        assert name in WORDINGS
    assert texts.TRUNCATION_ELLIPSIS == "…"
    assert texts.PROCESSING_TIMEOUT.startswith("Sorry, this is taking longer than expected")


@pytest.mark.parametrize("name", sorted(WORDINGS))
def test_wording_survives_the_formatter_and_fits_a_button_template(name):
    """Each wording is plain text (the formatter leaves it as is) and fits any Messenger text field."""
    value = WORDINGS[name]
    assert value.strip() == value and value
    assert strip_markdown(value) == value
    assert len(value) <= BUTTON_TEMPLATE_TEXT_CHARS
