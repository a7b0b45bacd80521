"""Fixtures shared by the messenger tests."""

from __future__ import annotations

import pytest

from messenger import circuit

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
