"""Tests for observability/logging.py: mid and psid_hash on every line, JSON lines, no raw PSID."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from observability.hashing import hash_psid
from observability.logging import ContextFilter, JsonFormatter, TextFormatter, log_context, safe_extra

RAW_PSID = "7834521190654321"


@pytest.fixture
def capture():
    """A logger writing through ContextFilter to an in-memory stream, with a chosen formatter."""
    handlers = []
    logger = logging.getLogger("messenger.tests-observability")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)

    def _attach(formatter: logging.Formatter) -> io.StringIO:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handler.addFilter(ContextFilter())
        logger.addHandler(handler)
        handlers.append(handler)
        return stream

    yield logger, _attach
    for handler in handlers:
        logger.removeHandler(handler)
    logger.propagate = True


def _json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_formatter_writes_one_parsable_object_per_line(capture):
    """Each record, even with a multi-line traceback, is one JSON object on one line."""
    logger, attach = capture
    stream = attach(JsonFormatter())

    logger.info("messenger.send.sent", extra={"mid": "m_1", "psid_hash": "abc", "part_count": 2})
    try:
        raise ValueError("line one\nline two")
    except ValueError:
        logger.exception("messenger.send.failed", extra={"mid": "m_2"})

    first, second = _json_lines(stream)
    assert first["event"] == "messenger.send.sent"
    assert first["level"] == "INFO"
    assert first["logger"] == "messenger.tests-observability"
    assert (first["mid"], first["psid_hash"], first["part_count"]) == ("m_1", "abc", 2)
    assert first["time"].endswith("+00:00")
    assert second["mid"] == "m_2" and second["psid_hash"] == "-"
    assert "ValueError: line one" in second["exception"]


def test_context_filter_defaults_mid_and_psid_hash_to_dash(capture):
    """A line logged without context still names mid and psid_hash, as '-'."""
    logger, attach = capture
    json_stream, text_stream = attach(JsonFormatter()), attach(TextFormatter())

    logger.warning("messenger.worker.started")

    (line,) = _json_lines(json_stream)
    assert (line["mid"], line["psid_hash"]) == ("-", "-")
    assert text_stream.getvalue().rstrip().endswith("mid=- psid_hash=-")


def test_raw_psid_in_extra_is_dropped_and_hashed(capture):
    """A raw PSID passed as extra={'psid': ...} never reaches a line; its hash does."""
    logger, attach = capture
    json_stream, text_stream = attach(JsonFormatter()), attach(TextFormatter())

    logger.info("messenger.jobs.started", extra={"psid": RAW_PSID, "mid": "m_3"})
    logger.info("messenger.jobs.token", extra={"access_token": "EAAB-secret", "sender_id": RAW_PSID})

    assert RAW_PSID not in json_stream.getvalue() + text_stream.getvalue()
    assert "EAAB-secret" not in json_stream.getvalue() + text_stream.getvalue()
    first, second = _json_lines(json_stream)
    assert "psid" not in first
    assert first["psid_hash"] == hash_psid(RAW_PSID)
    assert "access_token" not in second and "sender_id" not in second


def test_log_context_binds_mid_and_psid_hash_to_lines_inside(capture):
    """Inside log_context every line carries the bound ids; an explicit extra= still wins."""
    logger, attach = capture
    stream = attach(JsonFormatter())

    with log_context(mid="m_ctx", psid_hash="h_ctx"):
        logger.info("messenger.jobs.step")
        with log_context(mid="m_inner", psid_hash="h_inner"):
            logger.info("messenger.jobs.inner")
        logger.info("messenger.jobs.explicit", extra={"mid": "m_own"})
    logger.info("messenger.jobs.after")

    lines = [(line["mid"], line["psid_hash"]) for line in _json_lines(stream)]
    assert lines == [("m_ctx", "h_ctx"), ("m_inner", "h_inner"), ("m_own", "h_ctx"), ("-", "-")]


def test_log_format_json_setting_switches_the_console_to_json_lines():
    """With LOG_FORMAT=json the configured console handler prints one JSON object per line."""
    code = (
        "import logging; "
        "logging.getLogger('messenger.send').warning('messenger.send.retry', "
        "extra={'mid': 'm_9', 'psid': '" + RAW_PSID + "', 'attempt': 2})"
    )
    env = {**os.environ, "LOG_FORMAT": "json"}  # the shell command needs no database
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=Path(settings.BASE_DIR), env=env, capture_output=True, text=True, timeout=60, check=True,
    )

    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0]["event"] == "messenger.send.retry"
    assert (lines[0]["mid"], lines[0]["attempt"]) == ("m_9", 2)
    assert lines[0]["psid_hash"] == hash_psid(RAW_PSID)  # same key from the same environment
    assert RAW_PSID not in result.stderr


def test_django_request_log_line_never_carries_the_verify_token(client, caplog):
    """A refused verification logged by django.request shows the path, not the query with the token."""
    import io
    import logging

    from django.test import override_settings

    from observability.logging import ContextFilter, TextFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    handler.addFilter(ContextFilter())
    logging.getLogger("django.request").addHandler(handler)
    try:
        with override_settings(MESSENGER_VERIFY_TOKEN="the-real-token"):
            client.get("/messenger/v2/webhook", {"hub.mode": "subscribe", "hub.verify_token": "the-real-tokenX",
                                                 "hub.challenge": "1"})
    finally:
        logging.getLogger("django.request").removeHandler(handler)
    assert "Forbidden" in stream.getvalue()
    assert "the-real-token" not in stream.getvalue()


def test_safe_extra_drops_record_attributes_and_forbidden_keys():
    """Context forwarded as ``extra=`` keeps only what the formatters would write."""
    context = {
        "mid": "m_1",
        "attempt": 2,
        "msg": "would clash with LogRecord.msg",
        "message": "reserved by the formatter",
        "psid": RAW_PSID,
        "token": "EAAsecret",
        "access_token": "EAAsecret",
        "_private": 1,
    }
    assert safe_extra(context) == {"mid": "m_1", "attempt": 2}
    assert safe_extra(None) == {}


def test_safe_extra_output_can_always_be_logged(capture):
    """Whatever a caller hands over, logging it through safe_extra never raises and leaks nothing."""
    logger, attach = capture
    stream = attach(TextFormatter())
    logger.warning("event", extra=safe_extra({"name": "x", "args": "y", "psid": RAW_PSID, "mid": "m_2"}))
    line = stream.getvalue()
    assert "mid=m_2" in line
    assert RAW_PSID not in line
