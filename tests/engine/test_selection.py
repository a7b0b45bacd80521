"""get_engine(): CHATBOT_ENGINE picks the backend, the engine is cached, bad settings are refused."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from engine import ChatEngine, ReplyLimits, get_engine, reply_limits, reply_limits_register
from engine.openai import OpenAIEngine
from engine.rules import RulesEngine
from engine.rules_file import RulesFileError

OPENAI = {"CHATBOT_ENGINE": "openai", "CHATBOT_API_URL": "http://llm.test/v1", "CHATBOT_MODEL": "m"}


pytestmark = pytest.mark.usefixtures("fresh_engine")


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


@pytest.fixture
def registered_limits():
    """Lets a test register other limits; the ones registered before are put back afterwards."""
    before = reply_limits()
    yield
    reply_limits_register(limits=before)


@pytest.mark.usefixtures("registered_limits")
def test_engine_checks_its_file_against_the_registered_limits():
    """get_engine() builds the engine with the limits a channel registered, and rebuilds on a change."""
    first = get_engine()
    assert first.limits == reply_limits()
    reply_limits_register(limits=ReplyLimits(channel="TestChat", quick_replies=1))
    with pytest.raises(RulesFileError, match="quick_replies: has 2 items; TestChat allows at most 1"):
        get_engine()  # the shipped greeting offers two quick replies


@pytest.mark.usefixtures("registered_limits")
def test_openai_engine_reads_its_rules_file_with_the_registered_limits():
    """The openai engine's rules file (payloads, fallback text) is read with the same limits."""
    limits = ReplyLimits(channel="TestChat", cards=10)
    reply_limits_register(limits=limits)
    with override_settings(**OPENAI):
        engine = get_engine()
    assert engine._rules_engine().limits == limits
