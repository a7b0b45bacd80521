"""chatbot/sentry.py: nothing starts without SENTRY_DSN, and nothing leaves with a secret or a raw PSID."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sentry_sdk
from django.test import override_settings

from chatbot.sentry import FILTERED, Scrubber, sentry_init
from observability.hashing import hash_psid

PAGE_TOKEN = "EAAGpagetoken0123456789abcdef"
APP_SECRET = "app-secret-5f1e9d2c"
API_KEY = "sk-engine-key-88aa77bb"
METRICS = "scrape-token-41c0ffee"
RAW_PSID = "7834521190654321"
ROOT = Path(__file__).resolve().parents[2]

SECRETS = override_settings(
    MESSENGER_PAGE_ACCESS_TOKEN=PAGE_TOKEN,
    MESSENGER_APP_SECRET=APP_SECRET,
    CHATBOT_API_KEY=API_KEY,
    METRICS_TOKEN=METRICS,
)


def leaks(tree) -> list[str]:
    """Which of the test's secrets and raw PSID appear anywhere in ``tree``."""
    text = json.dumps(tree)
    return [value for value in (PAGE_TOKEN, APP_SECRET, API_KEY, METRICS, RAW_PSID) if value in text]


def exception_event(message: str, frame_vars: dict | None = None) -> dict:
    """An error event shaped as sentry-sdk hands it to ``before_send`` (already serialised)."""
    return {
        "level": "error",
        "exception": {
            "values": [
                {
                    "type": "SendError",
                    "value": message,
                    "stacktrace": {"frames": [{"function": "send_message", "vars": frame_vars or {}}]},
                }
            ]
        },
    }


@SECRETS
def test_before_send_scrubs_token_from_exception_message():
    """A page token quoted in an exception's message is replaced by [Filtered]."""
    event = exception_event(f"Graph refused token {PAGE_TOKEN} (code 190)")

    scrubbed = Scrubber().before_send(event, {})

    assert scrubbed["exception"]["values"][0]["value"] == f"Graph refused token {FILTERED} (code 190)"
    assert leaks(scrubbed) == []


@SECRETS
def test_before_send_scrubs_secrets_from_frame_vars():
    """Frame variables (reprs) lose every secret, whatever the variable is called."""
    event = exception_event("boom", {
        "headers": {"'Authorization'": f"'Bearer {PAGE_TOKEN}'"},
        "cfg": f"{{'secret': '{APP_SECRET}', 'key': '{API_KEY}'}}",
        "expected": f"'{METRICS}'",
    })

    scrubbed = Scrubber().before_send(event, {})

    assert leaks(scrubbed) == []
    assert scrubbed["exception"]["values"][0]["stacktrace"]["frames"][0]["vars"]["expected"] == f"'{FILTERED}'"


@SECRETS
def test_before_send_scrubs_request_data_and_query_string():
    """Request data, headers and the query string (the verify token rides there) are scrubbed."""
    event = {
        "request": {
            "url": "https://bot.example.com/messenger/v2/webhook",
            "query_string": "hub.mode=subscribe&hub.verify_token=test-verify-token&hub.challenge=1",
            "headers": {"Authorization": f"Bearer {METRICS}"},
            "data": {"note": f"token={PAGE_TOKEN}", "entry": [{"messaging": [{"sender": {"id": RAW_PSID}}]}]},
        }
    }

    scrubbed = Scrubber().before_send(event, {})

    assert leaks(scrubbed) == []
    assert "test-verify-token" not in json.dumps(scrubbed)
    assert scrubbed["request"]["data"]["entry"][0]["messaging"][0]["sender"]["id"] == hash_psid(RAW_PSID)


@SECRETS
def test_before_send_replaces_psid_in_extra_with_its_hash():
    """A PSID in the event's extra is replaced by its keyed hash, the value events and logs carry."""
    event = {"message": "send failed", "extra": {"psid": RAW_PSID, "recipient_id": int(RAW_PSID), "mid": "m_1"}}

    scrubbed = Scrubber().before_send(event, {})

    assert scrubbed["extra"] == {"psid": hash_psid(RAW_PSID), "recipient_id": hash_psid(RAW_PSID), "mid": "m_1"}


def test_before_send_replaces_a_known_psid_everywhere_else():
    """Once a PSID is known from a PSID field, its other occurrences (a message, a repr) are hashed too."""
    event = exception_event(
        f"no user {RAW_PSID}", {"psid": f"'{RAW_PSID}'", "body": {"recipient": {"id": f"'{RAW_PSID}'"}}}
    )

    scrubbed = Scrubber().before_send(event, {})

    value = scrubbed["exception"]["values"][0]
    assert value["value"] == f"no user {hash_psid(RAW_PSID)}"
    assert value["stacktrace"]["frames"][0]["vars"]["psid"] == hash_psid(RAW_PSID)
    assert value["stacktrace"]["frames"][0]["vars"]["body"]["recipient"]["id"] == hash_psid(RAW_PSID)


def test_before_send_leaves_non_psid_sender_alone():
    """``sender`` that is not PSID-looking (a signal's sender function) is kept as it is."""
    event = exception_event("boom", {"sender": "<function inbound_process at 0x7f>", "user": "'admin'"})

    scrubbed = Scrubber().before_send(event, {})

    assert scrubbed["exception"]["values"][0]["stacktrace"]["frames"][0]["vars"] == {
        "sender": "<function inbound_process at 0x7f>", "user": "'admin'",
    }


def test_before_send_scrubs_tokens_it_was_not_told_of():
    """An access_token query parameter or a Bearer credential is filtered even when not configured."""
    event = {"message": "GET /me?access_token=EAAunknown999&fields=id failed; Authorization: Bearer abcdefghijk"}

    scrubbed = Scrubber(secrets=lambda: []).before_send(event, {})

    assert scrubbed["message"] == f"GET /me?access_token={FILTERED}&fields=id failed; Authorization: Bearer {FILTERED}"


def test_scrubber_takes_every_page_token():
    """The secrets are a list: several page tokens are all scrubbed."""
    tokens = ["EAApageone111", "EAApagetwo222", "EAApagethree333"]
    event = {"message": " / ".join(tokens)}

    scrubbed = Scrubber(secrets=lambda: tokens).before_send(event, {})

    assert scrubbed["message"] == " / ".join([FILTERED] * 3)


@SECRETS
def test_before_breadcrumb_scrubs_token_and_psid():
    """Breadcrumbs (log lines, HTTP calls) are scrubbed before they join an event."""
    crumb = {"category": "messenger.send", "message": f"POST with {PAGE_TOKEN}", "data": {"psid": RAW_PSID}}

    scrubbed = Scrubber().before_breadcrumb(crumb, {})

    assert scrubbed == {"category": "messenger.send", "message": f"POST with {FILTERED}",
                        "data": {"psid": hash_psid(RAW_PSID)}}


def test_scrubber_failure_drops_the_event():
    """If scrubbing fails, the event is dropped (None), never sent as it was."""

    def broken():
        raise RuntimeError("settings not ready")

    assert Scrubber(secrets=broken).before_send({"message": PAGE_TOKEN}, {}) is None


def test_sentry_without_dsn_starts_nothing():
    """SENTRY_DSN unset (as in the test settings): no client is active and sentry_init does nothing."""
    assert sentry_init(dsn="", environment="test") is False
    assert not sentry_sdk.get_client().is_active()


SUBPROCESS = """
import json
import django
django.setup()
import sentry_sdk
from sentry_sdk.transport import Transport

client = sentry_sdk.get_client()
out = {"active": client.is_active(), "events": []}
if client.is_active():
    class Capture(Transport):
        def capture_envelope(self, envelope):
            out["events"] += [item.payload.json for item in envelope.items if item.type == "event"]

    client.transport = Capture(client.options)  # never the network
    out["integrations"] = sorted(client.integrations)
    out["send_default_pii"] = client.options["send_default_pii"]

    def send(psid, token):
        raise ValueError(f"Send API refused {token} for {psid}")

    try:
        send("%(psid)s", "%(token)s")
    except ValueError:
        sentry_sdk.capture_exception()
    sentry_sdk.flush()
print(json.dumps(out))
"""


def run_settings(dsn: str) -> dict:
    """Load the real settings in a fresh process with ``SENTRY_DSN=dsn``; report what Sentry did."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatbot.settings", "SENTRY_DSN": dsn,
           "MESSENGER_PAGE_ACCESS_TOKEN": PAGE_TOKEN}
    script = SUBPROCESS % {"psid": RAW_PSID, "token": PAGE_TOKEN}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_settings_without_dsn_do_not_start_sentry():
    """The settings read with SENTRY_DSN empty: no Sentry client in the process."""
    assert run_settings("")["active"] is False


def test_settings_with_dsn_start_sentry_scrubbed():
    """With a (fake) DSN the settings start Sentry with Django and RQ, no PII, and a scrubbed event."""
    report = run_settings("https://public@sentry.example.invalid/1")

    assert report["active"] is True
    assert {"django", "rq"} <= set(report["integrations"])
    assert report["send_default_pii"] is False
    [event] = report["events"]
    assert leaks(event) == []
    frame = event["exception"]["values"][0]["stacktrace"]["frames"][-1]
    assert frame["vars"]["psid"] == hash_psid(RAW_PSID)
    assert event["exception"]["values"][0]["value"] == f"Send API refused {FILTERED} for {hash_psid(RAW_PSID)}"
