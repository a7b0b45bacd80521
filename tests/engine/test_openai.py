"""The openai engine: the exact request it sends, and a fallback reply for every kind of failure."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import requests
import responses
from django.conf import settings
from django.test import override_settings

from engine.openai import OpenAIEngine
from engine.types import ChatContext, HistoryItem
from observability.logging import JsonFormatter, TextFormatter

API_URL = "http://llm.test/v1"
COMPLETIONS = f"{API_URL}/chat/completions"
API_KEY = "sk-test-SECRET-4242"
SHIPPED_RULES = json.loads((Path(settings.BASE_DIR) / "engine" / "rules.json").read_text())
FALLBACK_TEXT = SHIPPED_RULES["fallback"]["answers"][0]

pytestmark = pytest.mark.usefixtures("llm_settings")


@pytest.fixture
def llm_settings():
    with override_settings(
        CHATBOT_ENGINE="openai",
        CHATBOT_API_URL=API_URL,
        CHATBOT_MODEL="test-model",
        CHATBOT_API_KEY=API_KEY,
        CHATBOT_SYSTEM_PROMPT="You are a test bot.",
        CHATBOT_API_TIMEOUT_MS=10000,
        MESSENGER_HISTORY_LIMIT=10,
    ):
        yield


@pytest.fixture
def engine() -> OpenAIEngine:
    return OpenAIEngine()


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def completion(content: str = "Sure, here you go.") -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
    }


def ctx(text: str = "What are your opening hours?", *, payload: str = "", history=()) -> ChatContext:
    return ChatContext(
        psid_hash="abc123", conversation_id=9, text=text, payload=payload, history=tuple(history)
    )


def test_request_body_and_headers_exact(engine, mocked):
    """The engine posts model, system prompt, history and the new message, with the Bearer key."""
    mocked.add(responses.POST, COMPLETIONS, json=completion())
    history = [
        HistoryItem(direction="in", text="hello"),
        HistoryItem(direction="out", text="Hi there! What can I do for you?", intent="greeting"),
    ]
    engine.reply(ctx(history=history), timeout_s=5)

    assert len(mocked.calls) == 1
    request = mocked.calls[0].request
    assert request.url == COMPLETIONS
    assert json.loads(request.body) == {
        "model": "test-model",
        "messages": [
            {"role": "system", "content": "You are a test bot."},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "Hi there! What can I do for you?"},
            {"role": "user", "content": "What are your opening hours?"},
        ],
    }
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"


def test_request_without_key_sends_no_authorization(engine, mocked):
    """Servers without authentication (a local model) get no Authorization header."""
    mocked.add(responses.POST, COMPLETIONS, json=completion())
    with override_settings(CHATBOT_API_KEY=""):
        engine.reply(ctx())
    assert "Authorization" not in mocked.calls[0].request.headers


def test_reply_from_model_has_llm_intent(engine, mocked):
    """A good answer becomes a reply with intent 'llm', confidence 0.8, stripped text."""
    mocked.add(responses.POST, COMPLETIONS, json=completion("  We open at 9.\n"))
    reply = engine.reply(ctx())
    assert reply.text == "We open at 9."
    assert reply.intent == "llm"
    assert reply.confidence == 0.8
    assert reply.fallback is False
    assert reply.metadata["engine"] == "openai"
    assert reply.metadata["finish_reason"] == "stop"


def test_history_limit_applied(engine, mocked):
    """Only the last MESSENGER_HISTORY_LIMIT history items are sent, oldest first."""
    mocked.add(responses.POST, COMPLETIONS, json=completion())
    history = [HistoryItem(direction="in" if i % 2 == 0 else "out", text=f"m{i}") for i in range(6)]
    with override_settings(MESSENGER_HISTORY_LIMIT=3):
        engine.reply(ctx("now", history=history))
    messages = json.loads(mocked.calls[0].request.body)["messages"]
    assert messages == [
        {"role": "system", "content": "You are a test bot."},
        {"role": "assistant", "content": "m3"},
        {"role": "user", "content": "m4"},
        {"role": "assistant", "content": "m5"},
        {"role": "user", "content": "now"},
    ]


def test_history_limit_zero_sends_no_history(engine, mocked):
    """A limit of 0 sends only the system prompt and the new message."""
    mocked.add(responses.POST, COMPLETIONS, json=completion())
    with override_settings(MESSENGER_HISTORY_LIMIT=0):
        engine.reply(ctx("now", history=[HistoryItem(direction="in", text="old")]))
    assert [m["content"] for m in json.loads(mocked.calls[0].request.body)["messages"]] == [
        "You are a test bot.",
        "now",
    ]


@pytest.mark.parametrize(("budget", "expected"), [(2.5, 2.5), (None, 10.0), (30.0, 10.0)])
def test_timeout_is_min_of_budget_and_own(engine, mocked, budget, expected):
    """The HTTP timeout is min(timeout_s, CHATBOT_API_TIMEOUT_MS), or the engine's own without a budget."""
    mocked.add(responses.POST, COMPLETIONS, json=completion())
    engine.reply(ctx(), timeout_s=budget)
    assert mocked.calls[0].request.req_kwargs["timeout"] == expected


def test_no_budget_left_answers_fallback_without_calling(engine, mocked):
    """With no processing budget left the engine does not call the server at all."""
    reply = engine.reply(ctx(), timeout_s=0.0)
    assert len(mocked.calls) == 0
    assert reply.fallback is True
    assert reply.metadata["reason"] == "no_budget"


def test_mapped_payload_answered_from_rules(engine, mocked):
    """A payload mapped in the rules file is answered deterministically, without the model."""
    reply = engine.reply(ctx("Get Started", payload="GET_STARTED"))
    assert len(mocked.calls) == 0
    assert reply.intent == "greeting"
    assert reply.confidence == 1.0
    assert reply.metadata["engine"] == "rules"


def test_unmapped_payload_goes_to_model(engine, mocked):
    """A payload the rules file does not know is answered by the model from its text."""
    mocked.add(responses.POST, COMPLETIONS, json=completion())
    reply = engine.reply(ctx("Blue one", payload="COLOR_BLUE"))
    assert reply.intent == "llm"
    assert json.loads(mocked.calls[0].request.body)["messages"][-1] == {"role": "user", "content": "Blue one"}


def _failures(mocked, kind):
    if kind == "timeout":
        mocked.add(responses.POST, COMPLETIONS, body=requests.exceptions.ReadTimeout("read timed out"))
    elif kind == "connect_timeout":
        mocked.add(responses.POST, COMPLETIONS, body=requests.exceptions.ConnectTimeout("connect timed out"))
    elif kind == "connection":
        mocked.add(responses.POST, COMPLETIONS, body=requests.exceptions.ConnectionError("refused"))
    elif kind == "500":
        mocked.add(responses.POST, COMPLETIONS, json={"error": {"message": "boom"}}, status=500)
    elif kind == "401":
        mocked.add(responses.POST, COMPLETIONS, json={"error": {"message": f"bad key {API_KEY}"}}, status=401)
    elif kind == "bad_json":
        mocked.add(responses.POST, COMPLETIONS, body="<html>gateway</html>", status=200)
    elif kind == "empty_choices":
        mocked.add(responses.POST, COMPLETIONS, json={"choices": []})
    elif kind == "empty_content":
        mocked.add(responses.POST, COMPLETIONS, json=completion("   "))
    elif kind == "null_content":
        mocked.add(responses.POST, COMPLETIONS, json={"choices": [{"message": {"content": None}}]})
    elif kind == "not_object":
        mocked.add(responses.POST, COMPLETIONS, json=["not", "an", "object"])


@pytest.mark.parametrize(
    ("kind", "error_kind"),
    [
        ("timeout", "timeout"),
        ("connect_timeout", "timeout"),
        ("connection", "connection"),
        ("500", "http_status"),
        ("401", "http_status"),
        ("bad_json", "bad_json"),
        ("empty_choices", "empty_content"),
        ("empty_content", "empty_content"),
        ("null_content", "empty_content"),
        ("not_object", "bad_shape"),
    ],
)
def test_failure_gives_fallback_and_never_raises(engine, mocked, caplog, kind, error_kind):
    """Every failure answers with the rules file's fallback text, logged with its kind, key never logged."""
    _failures(mocked, kind)
    with caplog.at_level(logging.DEBUG):
        reply = engine.reply(ctx(), timeout_s=5)

    assert reply.fallback is True
    assert reply.intent == "fallback"
    assert reply.confidence == 0.0
    assert reply.text == FALLBACK_TEXT
    assert reply.metadata["reason"] == error_kind

    failures = [r for r in caplog.records if r.getMessage() == "chatbot.engine.openai-failed"]
    assert len(failures) == 1
    assert failures[0].error_kind == error_kind
    assert failures[0].psid_hash == "abc123"
    rendered = caplog.text + "".join(
        TextFormatter().format(r) + JsonFormatter().format(r) for r in caplog.records
    )
    assert API_KEY not in rendered


def test_failure_http_status_recorded(engine, mocked, caplog):
    """A non-2xx answer logs its status code."""
    _failures(mocked, "500")
    with caplog.at_level(logging.WARNING, logger="chatbot.engine.openai"):
        reply = engine.reply(ctx())
    assert reply.metadata["status"] == 500
    assert caplog.records[0].status == 500


def test_unexpected_error_still_answers(engine, monkeypatch, caplog):
    """Even a bug inside the engine gives a fallback reply instead of an exception."""

    def boom(*_args, **_kwargs):
        raise KeyError("bug")

    monkeypatch.setattr(engine, "_complete", boom)
    with caplog.at_level(logging.ERROR, logger="chatbot.engine.openai"):
        reply = engine.reply(ctx())
    assert reply.fallback is True
    assert reply.intent == "fallback"
    assert caplog.records[0].error_kind == "unexpected"


def test_broken_rules_file_still_uses_model(mocked, tmp_path, caplog):
    """Without a readable rules file the model still answers, and failures use the built-in text."""
    bad = tmp_path / "rules.json"
    bad.write_text("{broken")
    engine = OpenAIEngine(rules_path=str(bad))
    mocked.add(responses.POST, COMPLETIONS, json=completion("Yes."))
    assert engine.reply(ctx()).text == "Yes."
    mocked.replace(responses.POST, COMPLETIONS, status=503)
    reply = engine.reply(ctx())
    assert reply.fallback is True
    assert reply.text  # the built-in fallback text, never empty
