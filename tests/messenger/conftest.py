"""Fixtures shared by the messenger tests."""

from __future__ import annotations

import pytest
import requests
import responses

from messenger import circuit
from messenger.graph import reset_session
from tests.messenger.helpers import GRAPH, load_fixture_graph

T0 = 1_800_000_000_000  # a fixed "now" in ms; tests move it instead of sleeping


@pytest.fixture
def clock(monkeypatch):
    """The circuit breaker's clock frozen at T0; ``clock.advance(ms)`` moves it."""

    class Clock:
        now = T0

        def advance(self, ms: int) -> None:
            self.now += ms

    fake = Clock()
    monkeypatch.setattr(circuit, "_now_ms", lambda: fake.now)
    return fake


@pytest.fixture
def page_token(settings):
    """A page token set and the circuit closed: the pipeline really calls the (mocked) Send API."""
    settings.MESSENGER_PAGE_ACCESS_TOKEN = "EAAtestpagetoken"
    circuit.get_breaker().reset()


@pytest.fixture
def graph():
    """The Graph API mocked with ``responses``: every Send API call succeeds unless a test replaces it."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.POST, GRAPH, json=load_fixture_graph("send_success"))
        yield mock


@pytest.fixture
def fresh_graph_client():
    """A fresh pooled Graph session and a closed circuit around the test (use inside override_settings)."""
    reset_session()
    circuit.get_breaker().reset()
    yield
    reset_session()
    circuit.get_breaker().reset()


@pytest.fixture
def graph_api():
    """The Graph API, answered by ``responses``; every registered answer need not be used."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def sessions_used(monkeypatch):
    """Each requests.Session that sent a request, in order."""
    used: list[requests.Session] = []
    original = requests.Session.request

    def spy(self, *args, **kwargs):
        used.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", spy)
    return used
