"""Tests for harness/fake_model.py: the slow OpenAI-compatible model the pipeline bench runs against."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from django.test import override_settings

from engine.openai import OpenAIEngine, completion_text
from engine.types import ChatContext
from harness.fake_model import FakeModel

KEY = "fake-model-test-key"


@pytest.fixture
def model():
    with FakeModel(delay_s=0.3, api_key=KEY) as server:
        yield server


def _complete(model: FakeModel, content: str = "ping", key: str = KEY) -> requests.Response:
    body = {"model": "fake-model", "messages": [{"role": "system", "content": "be brief"},
                                                 {"role": "user", "content": content}]}
    return requests.post(f"{model.base_url}/chat/completions", json=body, timeout=5,
                         headers={"Authorization": f"Bearer {key}"})


def test_completion_is_well_formed_and_comes_after_the_delay(model):
    """A chat.completion the engine's own parser reads, answered no sooner than ``delay_s``."""
    started = time.monotonic()
    response = _complete(model)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed >= 0.3
    body = response.json()
    assert (body["object"], body["model"]) == ("chat.completion", "fake-model")
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "echo: ping"}
    assert completion_text(body=body) == (
        "echo: ping", {"finish_reason": "stop", "usage": body["usage"], "model": "fake-model"},
    )
    assert model.requests == 1


def test_two_concurrent_requests_both_finish_within_twice_the_delay(model):
    """The delay is the peer's: two callers wait side by side, not one after the other."""
    results: list[tuple[int, float]] = []
    lock = threading.Lock()
    started = time.monotonic()

    def call(n: int) -> None:
        status = _complete(model, content=f"caller {n}").status_code
        with lock:
            results.append((status, time.monotonic() - started))

    threads = [threading.Thread(target=call, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert [status for status, _ in results] == [200, 200]
    assert all(0.3 <= elapsed < 0.6 for _, elapsed in results)
    assert (model.requests, model.peak_in_flight) == (2, 2)


def test_wrong_key_is_refused_without_waiting(model):
    """A bad ``Authorization`` is a 401 with an OpenAI-style error, and no completion is counted."""
    response = _complete(model, key="not-the-key")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert model.requests == 0


def test_openai_engine_answers_from_the_fake_model(model):
    """The project's ``openai`` engine, pointed at ``base_url``, gets the model's text (not its fallback)."""
    context = ChatContext(psid_hash="h", conversation_id=None, text="what are your hours?")
    with override_settings(CHATBOT_API_URL=model.base_url, CHATBOT_API_KEY=KEY, CHATBOT_MODEL="fake-model"):
        reply = OpenAIEngine().reply(context)
    assert (reply.text, reply.intent) == ("echo: what are your hours?", "llm")
