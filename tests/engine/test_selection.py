"""get_engine(): CHATBOT_ENGINE picks the backend, the engine is cached, bad settings are refused."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from engine import ChatEngine, get_engine, reset_engine_cache
from engine.openai import OpenAIEngine
from engine.rules import RulesEngine
from engine.rules_file import RulesFileError

OPENAI = {"CHATBOT_ENGINE": "openai", "CHATBOT_API_URL": "http://llm.test/v1", "CHATBOT_MODEL": "m"}


@pytest.fixture(autouse=True)
def _fresh_cache():
    reset_engine_cache()
    yield
    reset_engine_cache()


def test_rules_is_the_default():
    """Without CHATBOT_ENGINE set, the embedded rules engine answers."""
    engine = get_engine()
    assert isinstance(engine, RulesEngine)
    assert engine.name == "rules"
    assert isinstance(engine, ChatEngine)


def test_openai_chosen_by_setting():
    """CHATBOT_ENGINE=openai with a URL and a model gives the openai engine."""
    with override_settings(**OPENAI):
        engine = get_engine()
    assert isinstance(engine, OpenAIEngine)
    assert engine.name == "openai"
    assert isinstance(engine, ChatEngine)


def test_engine_cached_until_settings_change():
    """The same engine is returned while settings stay; a change builds a new one."""
    first = get_engine()
    assert get_engine() is first
    with override_settings(**OPENAI):
        assert isinstance(get_engine(), OpenAIEngine)
    again = get_engine()
    assert isinstance(again, RulesEngine)
    assert again is not first


def test_unknown_engine_refused():
    """An unknown CHATBOT_ENGINE raises ImproperlyConfigured naming the valid choices."""
    with override_settings(CHATBOT_ENGINE="gpt"), pytest.raises(ImproperlyConfigured) as excinfo:
        get_engine()
    assert str(excinfo.value) == "CHATBOT_ENGINE='gpt' is not a chat engine; choose one of: openai, rules."


@pytest.mark.parametrize(
    ("overrides", "missing"),
    [
        ({"CHATBOT_API_URL": ""}, "CHATBOT_API_URL"),
        ({"CHATBOT_MODEL": ""}, "CHATBOT_MODEL"),
        ({"CHATBOT_API_URL": "", "CHATBOT_MODEL": ""}, "CHATBOT_API_URL and CHATBOT_MODEL"),
    ],
)
def test_openai_without_url_or_model_refused(overrides, missing):
    """engine=openai without its URL or model is refused at get_engine(), naming what is missing."""
    with override_settings(**{**OPENAI, **overrides}), pytest.raises(ImproperlyConfigured) as excinfo:
        get_engine()
    assert str(excinfo.value).startswith(f"CHATBOT_ENGINE='openai' needs {missing}:")


def test_malformed_rules_file_refused(tmp_path):
    """A broken rules file stops get_engine() with the file's error."""
    bad = tmp_path / "rules.json"
    bad.write_text('{"version": 1}')
    with override_settings(CHATBOT_RULES_FILE=bad), pytest.raises(RulesFileError, match="missing key"):
        get_engine()
