"""Tests for messenger/attachments.py: what the bot answers to images, stickers, files, links, locations."""

from __future__ import annotations

import pytest

from messenger import texts
from messenger.attachments import AttachmentDecision, attachment_kind, decide_for_attachments, unwrap_link
from messenger.parsing import normalise_attachment
from tests.conftest import load_fixture


def _message(name: str) -> dict:
    """The ``message`` of the first messaging item of a webhook fixture."""
    return load_fixture(name)["entry"][0]["messaging"][0]["message"]


def _attachments(name: str) -> list[dict]:
    """A fixture's attachments, normalised by the real parser into the dicts the handler takes."""
    return [normalise_attachment(raw).to_dict() for raw in _message(name)["attachments"]]


def _decide(name: str) -> AttachmentDecision:
    return decide_for_attachments(attachments=_attachments(name), text=_message(name).get("text", ""))


def _assert_reply(decision: AttachmentDecision, *, text: str, intent: str) -> None:
    """The decision is a canned reply of ``text`` with ``intent``, given with full confidence."""
    assert decision.action == "reply"
    assert decision.reply.text == text
    assert decision.reply.intent == intent
    assert decision.reply.confidence == 1.0


def _assert_unsupported(decision: AttachmentDecision) -> None:
    _assert_reply(decision, text=texts.ATTACHMENT_UNSUPPORTED, intent="attachment_unsupported")


def _unsupported_summary(fixture: str) -> str:
    """The summary of the fixture's attachments, once their decision is checked to be 'unsupported'."""
    decision = _decide(fixture)
    _assert_unsupported(decision)
    return decision.summary


# --- the seed's tests ------------------------------------------------------------------------------


def test_image_attachment_acknowledged():
    """Two images get one acknowledgement, and the summary names both URLs."""
    decision = _decide("image_attachment")
    _assert_reply(decision, text=texts.IMAGE_RECEIVED, intent="attachment_image")
    assert decision.summary == (
        "[image] http://facebookimage.com/image.png; [image] http://facebookimage.com/imageX.png"
    )


def test_file_attachment_returns_unsupported_message():
    """A file gets the 'unsupported' reply."""
    assert _unsupported_summary("file_attachment") == "[file] http://facebookfile.com/file.pdf"


def test_audio_attachment_returns_unsupported_message():
    """A voice clip gets the 'unsupported' reply."""
    assert _unsupported_summary("audio_attachment").startswith("[audio] https://cdn.fbsbx.com/")


def test_location_attachment_ignored():
    """A shared location gets no reply at all, but is summarised for the transcript."""
    decision = _decide("location_attachment")
    assert decision.action == "ignore"
    assert decision.reply is None
    assert decision.engine_text == ""
    assert decision.summary == "[location] 37.483872693672,-122.14900441942"


# --- the other kinds --------------------------------------------------------------------------------


def test_video_attachment_returns_unsupported_message():
    """A video gets the 'unsupported' reply."""
    assert _unsupported_summary("video_attachment") == "[video] http://facebook.com/video.mp4"


def test_sticker_like_gets_friendly_acknowledgement():
    """The thumbs-up 'like' (an image with a sticker id) is a sticker, answered warmly."""
    decision = _decide("sticker_like")
    _assert_reply(decision, text=texts.STICKER_RECEIVED, intent="attachment_sticker")
    assert decision.summary.startswith("[sticker 369239263222822] https://scontent.xx.fbcdn.net/")


def test_sticker_type_gets_friendly_acknowledgement():
    """The newer ``sticker`` attachment type is a sticker too."""
    attachment = {"type": "sticker", "url": "https://x.example/s.png", "title": "", "sticker_id": 42}
    decision = decide_for_attachments(attachments=[attachment])
    assert decision.reply.intent == "attachment_sticker"


def test_shared_link_goes_to_engine_with_title_and_url():
    """A shared link asks the engine about its title and its real URL (Facebook's redirect unwrapped)."""
    decision = _decide("fallback_attachment")
    assert decision.action == "engine"
    assert decision.reply is None
    # The message text is the start of the title, so it is said once.
    assert decision.engine_text == (
        "Dyon Enter 32 Pro 80 cm (31,5 Zoll) Fernseher (Triple Tuner, DVB-T2 H.265/HEVC)\n"
        "https://www.amazon.de/dp/B01BDR9Q6W/ref=tsm_1_fb_lk"
    )
    assert decision.summary.startswith("[link] Dyon Enter 32 Pro 80 cm (31,5 Zoll)")


def test_multi_attachment_with_a_link_goes_to_engine():
    """Image, link and location together: the link needs the engine, so the engine answers."""
    decision = _decide("multi_attachment")
    assert decision.action == "engine"
    assert decision.engine_text == "<TITLE_OF_THE_URL_ATTACHMENT>\n<URL_OF_THE_ATTACHMENT>"
    assert decision.summary == (
        "[image] http://image.url; [link] <TITLE_OF_THE_URL_ATTACHMENT> <URL_OF_THE_ATTACHMENT>; "
        "[location] 52.3765533,9.7389123"
    )


def test_image_and_location_acknowledge_only_the_image():
    """A location next to an image is ignored; the image is still acknowledged."""
    attachments = _attachments("image_attachment")[:1] + _attachments("location_attachment")
    decision = decide_for_attachments(attachments=attachments)
    assert decision.action == "reply"
    assert decision.reply.intent == "attachment_image"


def test_image_and_file_get_one_combined_reply():
    """Different kinds are answered in one reply, each acknowledgement once, in order of appearance."""
    attachments = _attachments("image_attachment") + _attachments("file_attachment")
    decision = decide_for_attachments(attachments=attachments)
    _assert_reply(decision, text=f"{texts.IMAGE_RECEIVED} {texts.ATTACHMENT_UNSUPPORTED}", intent="attachment_mixed")


def test_unknown_attachment_type_returns_unsupported_message():
    """A type Facebook adds tomorrow gets the 'unsupported' reply rather than silence."""
    attachment = {
        "type": "ephemeral_hologram",
        "url": "",
        "title": "",
        "sticker_id": None,
        "coordinates": None,
    }
    decision = decide_for_attachments(attachments=[attachment])
    _assert_unsupported(decision)
    assert decision.summary == "[ephemeral_hologram]"


def test_text_with_an_image_goes_to_engine():
    """Words sent along with attachments are a question for the engine."""
    decision = decide_for_attachments(attachments=_attachments("image_attachment"), text="Is this broken?")
    assert decision.action == "engine"
    assert decision.engine_text == "Is this broken?"


def test_no_attachments_ignored():
    """An empty attachment list has nothing to answer."""
    assert decide_for_attachments(attachments=[]) == AttachmentDecision(action="ignore")


def test_link_without_title_or_url_returns_unsupported_message():
    """A shared link with nothing to ask about is treated like an unsupported attachment."""
    attachment = {"type": "fallback", "url": "", "title": "", "sticker_id": None, "coordinates": None}
    decision = decide_for_attachments(attachments=[attachment])
    _assert_unsupported(decision)


def test_decide_accepts_parsed_attachment_objects():
    """The parser's Attachment dataclasses are accepted as well as their dict form."""
    raw = _message("image_attachment")["attachments"]
    decision = decide_for_attachments(attachments=[normalise_attachment(a) for a in raw])
    assert decision.reply.intent == "attachment_image"


@pytest.mark.parametrize(
    ("attachment", "kind"),
    [
        ({"type": "image", "sticker_id": None}, "image"),
        ({"type": "image", "sticker_id": 369239263222822}, "sticker"),
        ({"type": "sticker"}, "sticker"),
        ({"type": "audio"}, "unsupported"),
        ({"type": "video"}, "unsupported"),
        ({"type": "file"}, "unsupported"),
        ({"type": "location"}, "location"),
        ({"type": "fallback"}, "link"),
        ({"type": "reel"}, "unsupported"),
        ({}, "unsupported"),
    ],
)
def test_attachment_kind_classifies_each_type(attachment, kind):
    """Every attachment type maps to one of the handler's kinds."""
    assert attachment_kind(attachment) == kind


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://l.facebook.com/l.php?u=https%3A%2F%2Fexample.com%2Fa%3Fb%3D1&h=AT",
            "https://example.com/a?b=1",
        ),
        ("https://lm.facebook.com/l.php?u=http%3A%2F%2Fexample.com", "http://example.com"),
        (
            "https://l.facebook.com/l.php?u=javascript%3Aalert(1)",
            "https://l.facebook.com/l.php?u=javascript%3Aalert(1)",
        ),
        (
            "https://example.com/l.php?u=https%3A%2F%2Fother.com",
            "https://example.com/l.php?u=https%3A%2F%2Fother.com",
        ),
        ("<URL_OF_THE_ATTACHMENT>", "<URL_OF_THE_ATTACHMENT>"),
    ],
)
def test_unwrap_link_returns_the_destination_of_facebook_redirects_only(url, expected):
    """Only Facebook's own redirect wrapper is unwrapped, and only to an http(s) destination."""
    assert unwrap_link(url) == expected
