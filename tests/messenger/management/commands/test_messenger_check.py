"""``messenger_check`` against a fake Graph API and a fake webhook (``responses``)."""

from __future__ import annotations

import json
import logging
from io import StringIO
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.core.management import call_command
from django.test import override_settings

from tests.messenger.graph_fixtures import graph

GRAPH = "https://graph.test/v25.0"
TOKEN = "EAAcheck-PAGE-TOKEN-0123456789"
PAGE_ID = "1122334455"
APP_ID = "7788"
WEBHOOK = "https://bot.example.test/messenger/v2/webhook"
ME_URL = f"{GRAPH}/me"
SUBSCRIBED_URL = f"{GRAPH}/{PAGE_ID}/subscribed_apps"


@pytest.fixture(autouse=True)
def check_settings():
    with override_settings(
        MESSENGER_GRAPH_API_URL=GRAPH,
        MESSENGER_PAGE_ACCESS_TOKEN=TOKEN,
        MESSENGER_PAGE_ID=PAGE_ID,
        MESSENGER_APP_ID=APP_ID,
        MESSENGER_WEBHOOK_URL=WEBHOOK,
        MESSENGER_VERIFY_TOKEN="test-verify-token",
    ):
        yield


def _echo_challenge(request):
    query = parse_qs(urlsplit(request.url).query)
    if query.get("hub.verify_token") != ["test-verify-token"] or query.get("hub.mode") != ["subscribe"]:
        return 403, {}, "Forbidden"
    return 200, {"Content-Type": "text/plain"}, query["hub.challenge"][0]


@pytest.fixture
def fake_graph():
    """Graph answers for a healthy page; a test replaces one with ``fake_graph.replace``."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, ME_URL, json=graph("me_page"))
        rsps.add(responses.GET, SUBSCRIBED_URL, json=graph("subscribed_apps"))
        rsps.add_callback(responses.GET, WEBHOOK, callback=_echo_challenge)
        yield rsps


def run(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("messenger_check", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


def test_check_good_page_exits_zero_and_says_ok(fake_graph, caplog):
    caplog.set_level(logging.DEBUG)
    code, out, err = run()
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["page", "check", "result", "what", "to", "do"]
    assert [line.split()[:3] for line in lines[1:4]] == [
        [PAGE_ID, "token", "ok"],
        [PAGE_ID, "subscription", "ok"],
        ["(all)", "webhook", "ok"],
    ]
    assert lines[-1] == "all checks passed"
    assert fake_graph.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in out + err + caplog.text


def test_check_dead_token_exits_one_and_names_the_token(fake_graph, caplog):
    caplog.set_level(logging.DEBUG)
    fake_graph.replace(responses.GET, ME_URL, json=graph("send_error_token_expired"), status=400)
    code, out, err = run()
    assert code == 1
    token_line = next(line for line in out.splitlines() if " token " in line)
    assert "PROBLEM" in token_line
    assert "token invalid or expired (Graph code 190/463)" in token_line
    assert "MESSENGER_PAGE_ACCESS_TOKEN" in token_line
    assert "subscription  PROBLEM  not checked: the token does not work" in out
    assert out.splitlines()[-1] == "2 problem(s)"
    assert TOKEN not in out + err + caplog.text


def test_check_token_of_another_page_is_a_problem(fake_graph):
    fake_graph.replace(responses.GET, ME_URL, json={"id": "999", "name": "Other"})
    code, out, _ = run()
    assert code == 1
    assert "the token belongs to 999 (Other), not to page 1122334455" in out


def test_check_missing_subscription_field_exits_one_and_names_it(fake_graph):
    fake_graph.replace(responses.GET, SUBSCRIBED_URL, json=graph("subscribed_apps_missing_fields"))
    code, out, _ = run()
    assert code == 1
    line = next(line for line in out.splitlines() if " subscription " in line)
    assert "PROBLEM" in line
    assert "missing fields: message_reactions, messaging_handovers;" in line


def test_check_app_not_subscribed_is_a_problem(fake_graph):
    fake_graph.replace(responses.GET, SUBSCRIBED_URL, json={"data": [], "paging": {}})
    code, out, _ = run()
    assert code == 1
    assert f"app {APP_ID} is not subscribed to the page" in out


def test_check_json_gives_the_exact_rows(fake_graph, caplog):
    caplog.set_level(logging.DEBUG)
    fake_graph.replace(responses.GET, SUBSCRIBED_URL, json=graph("subscribed_apps_missing_fields"))
    code, out, err = run("--json")
    assert code == 1
    subscribe = (
        f"subscribe it: POST /{PAGE_ID}/subscribed_apps with subscribed_fields=messages,messaging_postbacks,"
        "message_echoes,message_reactions,messaging_handovers,standby"
    )
    assert json.loads(out) == {
        "ok": False,
        "rows": [
            {"page": PAGE_ID, "check": "token", "ok": True, "detail": f"valid, page {PAGE_ID} (Test Page)"},
            {
                "page": PAGE_ID,
                "check": "subscription",
                "ok": False,
                "detail": f"missing fields: message_reactions, messaging_handovers; {subscribe}",
            },
            {"page": "(all)", "check": "webhook", "ok": True, "detail": f"{WEBHOOK} answers the verification"},
        ],
    }
    assert TOKEN not in out + err + caplog.text


def test_check_without_webhook_url_counts_as_a_problem(fake_graph):
    with override_settings(MESSENGER_WEBHOOK_URL=""):
        code, out, _ = run("--json")
    assert code == 1
    assert json.loads(out)["rows"][-1] == {
        "page": "(all)",
        "check": "webhook",
        "ok": False,
        "detail": "not checked: set MESSENGER_WEBHOOK_URL (or --webhook-url)",
    }


def test_check_webhook_with_wrong_verify_token_names_it(fake_graph):
    with override_settings(MESSENGER_VERIFY_TOKEN="another-token"):
        code, out, _ = run()
    assert code == 1
    assert "refused the verify token (403)" in out
    assert "another-token" not in out


def test_check_webhook_url_option_wins_over_the_setting(fake_graph):
    other = "https://other.example.test/hook"
    fake_graph.add_callback(responses.GET, other, callback=_echo_challenge)
    code, out, _ = run("--webhook-url", other)
    assert code == 0
    assert f"{other} answers the verification" in out


def test_check_without_a_page_token_is_a_problem():
    with override_settings(MESSENGER_PAGE_ACCESS_TOKEN="", MESSENGER_WEBHOOK_URL=""):
        code, out, _ = run()
    assert code == 1
    assert "no page configured: set MESSENGER_PAGE_ACCESS_TOKEN" in out


def test_check_graph_unreachable_names_the_error_only(fake_graph):
    import requests

    fake_graph.replace(responses.GET, ME_URL, body=requests.ConnectionError(f"boom access_token={TOKEN}"))
    code, out, err = run()
    assert code == 1
    assert "Graph API unreachable (ConnectionError)" in out
    assert TOKEN not in out + err


@pytest.mark.django_db
def test_check_names_a_stored_page_whose_token_no_key_decrypts(fake_graph):
    """A page stored under a key since removed is not served: the check says so and exits non-zero."""
    from cryptography.fernet import Fernet

    from messenger.pages import page_add, pages_cache_clear

    with override_settings(MESSENGER_TOKEN_KEYS=[Fernet.generate_key().decode()]):
        page_add(page_id="6060", name="Lost", token="EAAlostPageToken")
    pages_cache_clear()
    code, out, _err = run()
    assert code == 1
    assert out.splitlines()[1].split()[:3] == ["6060", "token", "PROBLEM"]
    assert "messenger_page rotate" in out and "EAAlostPageToken" not in out
