"""Fixtures of the tests that run real processes: the fake Graph/chat server and rqworker processes."""

from __future__ import annotations

import pytest

from tests.integration.support import FakeServer, Worker


@pytest.fixture
def fake():
    """A fake Send API and OpenAI-compatible chat server on loopback, for the length of one test."""
    with FakeServer() as server:
        yield server


@pytest.fixture
def workers(tmp_path):
    """Start ``manage.py rqworker`` processes with ``workers(env)``; all are stopped after the test."""
    started: list[Worker] = []

    def start(env) -> Worker:
        worker = Worker(env, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
