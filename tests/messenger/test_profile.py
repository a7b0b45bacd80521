"""The Messenger Profile: validation of Facebook's limits, and the set/show/delete command."""

from __future__ import annotations

import json
import logging
from io import StringIO
from pathlib import Path

import pytest
import requests
import responses
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings

from engine.rules_file import rules_load
from messenger.profile import (
    DEFAULT_PROFILE_FILE,
    ProfileError,
    profile_delete,
    profile_encode,
    profile_load,
    profile_set,
    profile_show,
    profile_validate,
)

GRAPH = "https://graph.test/v25.0"
PROFILE_URL = f"{GRAPH}/me/messenger_profile"
TOKEN = "EAAtest-PAGE-TOKEN-0123456789"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "graph"
SUCCESS = json.loads((FIXTURES / "messenger_profile_success.json").read_text())
INVALID_TOKEN = json.loads((FIXTURES / "send_error_invalid_token.json").read_text())

pytestmark = pytest.mark.usefixtures("graph_settings")


@pytest.fixture
def graph_settings():
    with override_settings(MESSENGER_GRAPH_API_URL=GRAPH, MESSENGER_PAGE_ACCESS_TOKEN=TOKEN):
        yield


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("messenger_profile", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def shipped_profile() -> dict:
    data = json.loads(DEFAULT_PROFILE_FILE.read_text())
    return {key: value for key, value in data.items() if not key.startswith("_")}


# --- set ----------------------------------------------------------------------------------------


def test_set_posts_shipped_profile(mocked):
    """`set` posts the repository's profile file, minus staff notes, with the page token as Bearer."""
    mocked.add(responses.POST, PROFILE_URL, json=SUCCESS)
    out, _err = run("set")
    assert len(mocked.calls) == 1
    request = mocked.calls[0].request
    assert request.url == PROFILE_URL
    assert json.loads(request.body) == shipped_profile()
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert out == (
        "Messenger profile set (get_started, greeting, persistent_menu, ice_breakers): "
        '{"result": "success"}\n'
    )


@pytest.mark.parametrize(
    "fixture", ["messenger_profile_request.json", "messenger_profile_greeting_request.json"]
)
def test_set_file_sends_reference_body(mocked, fixture):
    """`set --file` sends Facebook's reference bodies unchanged."""
    mocked.add(responses.POST, PROFILE_URL, json=SUCCESS)
    run("set", "--file", str(FIXTURES / fixture))
    assert json.loads(mocked.calls[0].request.body) == json.loads((FIXTURES / fixture).read_text())


def test_set_function_returns_graph_answer(mocked):
    """profile_set returns Facebook's answer as a dict."""
    mocked.add(responses.POST, PROFILE_URL, json=SUCCESS)
    assert profile_set(profile={"get_started": {"payload": "GET_STARTED"}}) == {"result": "success"}


# --- dry run ------------------------------------------------------------------------------------


def test_set_dry_run_prints_exact_json_and_sends_nothing(mocked):
    """`set --dry-run` prints the very bytes a real run sends, and sends nothing."""
    out, err = run("set", "--dry-run")
    assert len(mocked.calls) == 0
    assert out == profile_encode(body=shipped_profile()) + "\n"
    assert err == f"Dry run: would POST {PROFILE_URL} with this body:\n"

    mocked.add(responses.POST, PROFILE_URL, json=SUCCESS)
    run("set")
    assert mocked.calls[0].request.body.decode("utf-8") + "\n" == out


def test_delete_dry_run_prints_exact_json(mocked):
    """`delete --dry-run` prints the fields body and sends nothing."""
    out, _err = run("delete", "greeting", "ice_breakers", "--dry-run")
    assert len(mocked.calls) == 0
    assert json.loads(out) == {"fields": ["greeting", "ice_breakers"]}
    assert out == profile_encode(body={"fields": ["greeting", "ice_breakers"]}) + "\n"


def test_dry_run_implied_without_token(mocked):
    """Without a page token, `set` prints the JSON, notes why on stderr, and sends nothing."""
    with override_settings(MESSENGER_PAGE_ACCESS_TOKEN=""):
        out, err = run("set")
    assert len(mocked.calls) == 0
    assert json.loads(out) == shipped_profile()
    assert err.startswith("MESSENGER_PAGE_ACCESS_TOKEN is not set: dry run, nothing is sent.\n")


# --- show and delete ----------------------------------------------------------------------------


def test_show_prints_current_profile(mocked):
    """`show` asks for the four fields and prints the profile Graph returns, as JSON."""
    current = {"get_started": {"payload": "GET_STARTED"}, "greeting": [{"locale": "default", "text": "Hi"}]}
    mocked.add(responses.GET, PROFILE_URL, json={"data": [current]})
    out, _err = run("show")
    request = mocked.calls[0].request
    assert request.url == f"{PROFILE_URL}?fields=get_started%2Cgreeting%2Cpersistent_menu%2Cice_breakers"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(out) == current


def test_show_empty_profile_prints_empty_object(mocked):
    """A page with no profile prints {}."""
    mocked.add(responses.GET, PROFILE_URL, json={"data": []})
    assert profile_show() == {}
    out, _err = run("show", "greeting")
    assert json.loads(out) == {}
    assert mocked.calls[1].request.url == f"{PROFILE_URL}?fields=greeting"


def test_delete_sends_fields(mocked):
    """`delete FIELD...` sends DELETE with {"fields": [...]}, duplicates removed."""
    mocked.add(responses.DELETE, PROFILE_URL, json=SUCCESS)
    out, _err = run("delete", "persistent_menu", "ice_breakers", "persistent_menu")
    request = mocked.calls[0].request
    assert request.method == "DELETE"
    assert json.loads(request.body) == {"fields": ["persistent_menu", "ice_breakers"]}
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert out == 'Messenger profile fields deleted (persistent_menu, ice_breakers): {"result": "success"}\n'


def test_delete_unknown_field_refused(mocked):
    """An unknown field name exits non-zero before anything is sent."""
    with pytest.raises(CommandError, match=r"unknown field\(s\) \['greetings'\]"):
        run("delete", "greetings")
    assert len(mocked.calls) == 0


# --- errors -------------------------------------------------------------------------------------


def test_graph_error_exits_with_code_message_and_trace(mocked):
    """A Graph error exits non-zero naming the status, code, subcode, message and fbtrace_id."""
    mocked.add(responses.POST, PROFILE_URL, json=INVALID_TOKEN, status=400)
    with pytest.raises(CommandError) as excinfo:
        run("set")
    assert str(excinfo.value) == (
        "Graph API refused the request (HTTP 400, code 190, subcode 1234567): "
        "Invalid OAuth access token. [fbtrace_id BLBz/WZt8dN]"
    )


def test_graph_error_fields_on_exception(mocked):
    """The service raises a typed ProfileError carrying Facebook's error fields."""
    mocked.add(responses.DELETE, PROFILE_URL, json=INVALID_TOKEN, status=400)
    with pytest.raises(ProfileError) as excinfo:
        profile_delete(fields=["greeting"])
    error = excinfo.value
    assert (error.kind, error.status, error.code, error.subcode, error.fbtrace_id) == (
        "graph",
        400,
        190,
        1234567,
        "BLBz/WZt8dN",
    )


def test_network_error_exits_non_zero(mocked):
    """No answer from Facebook is a clear error, not a traceback."""
    mocked.add(responses.GET, PROFILE_URL, body=requests.exceptions.ConnectionError("refused"))
    with pytest.raises(CommandError, match=r"no answer from the Graph API \(ConnectionError\)"):
        run("show")


def test_invalid_profile_file_exits_listing_problems(mocked, tmp_path):
    """`set` with a profile that breaks the limits exits non-zero, listing each problem, sending nothing."""
    bad = tmp_path / "profile.json"
    bad.write_text(json.dumps({"greeting": [{"locale": "en_US", "text": "x" * 161}]}))
    with pytest.raises(CommandError) as excinfo:
        run("set", "--file", str(bad))
    assert str(excinfo.value) == (
        f"{bad} is not a valid Messenger profile:\n"
        "  - greeting[0].text: 161 characters; Facebook's limit is 160\n"
        '  - greeting: one entry must have "locale": "default" (shown when no locale matches)'
    )
    assert len(mocked.calls) == 0


def test_token_never_printed(mocked, caplog):
    """The page token appears in no output, error or log line, whatever the outcome."""
    mocked.add(responses.POST, PROFILE_URL, json=SUCCESS)
    mocked.add(responses.GET, PROFILE_URL, json={"data": [{}]})
    mocked.add(
        responses.DELETE,
        PROFILE_URL,
        json={"error": {"message": f"Bad token {TOKEN}", "code": 190, "fbtrace_id": "X"}},
        status=400,
    )
    outputs: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for args in (("set",), ("set", "--dry-run"), ("show",), ("delete", "greeting", "--dry-run")):
            outputs.extend(run(*args))
        with pytest.raises(CommandError) as excinfo:
            run("delete", "greeting")
    outputs.append(str(excinfo.value))
    assert "Bad token ***" in str(excinfo.value)
    assert TOKEN not in "".join(outputs)
    assert TOKEN not in caplog.text
    assert all(TOKEN not in request.url for request in (call.request for call in mocked.calls))


def test_profile_requests_reuse_the_pooled_session_with_bearer_header(mocked, sessions_used):
    """set, show and delete go through the one Graph client: its pooled session, the token as Bearer."""
    used = sessions_used
    mocked.add(responses.POST, PROFILE_URL, json=SUCCESS)
    mocked.add(responses.GET, PROFILE_URL, json={"data": []})
    mocked.add(responses.DELETE, PROFILE_URL, json=SUCCESS)

    for args in (("set",), ("show",), ("delete", "greeting")):
        run(*args)

    # The spy keeps every session alive, so three fresh sessions could not be one object.
    assert len(used) == 3 and all(session is used[0] for session in used)
    for call in mocked.calls:
        assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert "access_token" not in call.request.url


def test_graph_error_text_scrubs_token_shaped_values(mocked):
    """A Graph message quoting some credential (not only the configured token) is masked too."""
    mocked.add(
        responses.GET,
        PROFILE_URL,
        json={"error": {"message": "Bad header Bearer EAAotherToken123", "code": 190}},
        status=401,
    )
    with pytest.raises(ProfileError) as excinfo:
        profile_show()
    assert "EAAotherToken123" not in str(excinfo.value)
    assert "Bearer ***" in str(excinfo.value)


# --- validation ---------------------------------------------------------------------------------


def menu(items: list[dict], **extra) -> dict:
    return {"persistent_menu": [{"locale": "default", "call_to_actions": items, **extra}]}


POSTBACK = {"type": "postback", "title": "Help", "payload": "HELP"}


@pytest.mark.parametrize(
    ("profile", "problem"),
    [
        ({"greeting": [{"locale": "default", "text": "é" * 161}]}, "greeting[0].text: 161 characters"),
        ({"get_started": {"payload": "P" * 1001}}, "get_started.payload: 1001 characters; the limit is 1000"),
        (menu([POSTBACK] * 21), "persistent_menu[0].call_to_actions: 21 items; the limit is 20"),
        (menu([{**POSTBACK, "title": "T" * 31}]), "call_to_actions[0].title: 31 characters; the limit is 30"),
        (menu([{"type": "nested", "title": "More", "call_to_actions": []}]), "nested menus were removed"),
        (menu([{"type": "web_url", "title": "Site"}]), "a web_url item needs an http(s) URL"),
        (menu([{"type": "postback", "title": "Help"}]), "a postback item needs a payload"),
        (menu([], composer_input_disabled=True), "call_to_actions: expected a non-empty list"),
        (
            {"persistent_menu": [{"locale": "fr_FR", "call_to_actions": [POSTBACK]}]},
            'persistent_menu: one entry must have "locale": "default"',
        ),
        (
            {
                "ice_breakers": [
                    {
                        "locale": "default",
                        "call_to_actions": [{"question": f"Q{i}?", "payload": f"P{i}"} for i in range(5)],
                    }
                ]
            },
            "ice_breakers[0].call_to_actions: 5 questions; the limit is 4",
        ),
        ({"ice_breakers": [{"question": "Q?", "payload": "P"}]}, "the old unlocalized format is deprecated"),
        (
            {"greeting": [{"locale": "default", "text": "Hi"}], "whitelisted": []},
            "unknown field(s) ['whitelisted']",
        ),
        ({}, "nothing to set"),
    ],
)
def test_validate_reports_facebook_limits(profile, problem):
    """Each documented limit broken once is reported by profile_validate."""
    problems = profile_validate(profile=profile)
    assert any(problem in p for p in problems), problems


def test_validate_accepts_limits_exactly():
    """Values exactly at the limits pass: 160-character greeting, 20 items, 30-char titles, 4 questions."""
    profile = {
        "get_started": {"payload": "P" * 1000},
        "greeting": [{"locale": "default", "text": "g" * 160}],
        **menu([{**POSTBACK, "title": "T" * 30}] * 20),
        "ice_breakers": [
            {
                "locale": "default",
                "call_to_actions": [{"question": f"Q{i}?", "payload": "HELP"} for i in range(4)],
            }
        ],
    }
    assert profile_validate(profile=profile) == []


def test_shipped_profile_is_valid_and_its_payloads_are_answered():
    """The repository's profile passes validation, and the rules file answers every payload it uses."""
    profile = profile_load()
    payloads = {profile["get_started"]["payload"]}
    payloads |= {
        item["payload"]
        for m in profile["persistent_menu"]
        for item in m["call_to_actions"]
        if "payload" in item
    }
    payloads |= {q["payload"] for block in profile["ice_breakers"] for q in block["call_to_actions"]}
    rules = rules_load(path=settings.CHATBOT_RULES_FILE)
    assert payloads <= set(rules.payloads), payloads - set(rules.payloads)


def test_load_malformed_json_names_file(tmp_path):
    """A profile file that is not JSON is reported with its path and position."""
    bad = tmp_path / "p.json"
    bad.write_text("{oops")
    with pytest.raises(ProfileError, match=r"p\.json is not valid JSON: .* at line 1, column 2"):
        profile_load(bad)


# --- --page (several pages) ----------------------------------------------------------------------
@pytest.mark.django_db
def test_set_with_page_uses_that_pages_token(mocked):
    """`--page` sends with the chosen page's token, among several."""
    from messenger.pages import page_add

    page_add(page_id="1001", name="A", token="EAAprofileTokenA")
    page_add(page_id="1002", name="B", token="EAAprofileTokenB")
    mocked.add(responses.POST, PROFILE_URL, json=SUCCESS)
    out, err = run("--page", "1002", "set")
    assert mocked.calls[0].request.headers["Authorization"] == "Bearer EAAprofileTokenB"
    assert "EAAprofileToken" not in out + err


@pytest.mark.django_db
def test_set_without_page_among_several_pages_is_refused(mocked):
    from messenger.pages import page_add

    page_add(page_id="1001", name="A", token="EAAprofileTokenA")
    with pytest.raises(CommandError, match="--page"):
        run("set")
    assert len(mocked.calls) == 0


@pytest.mark.django_db
def test_set_with_unknown_page_is_refused(mocked):
    with override_settings(MESSENGER_PAGE_ID="1001"), pytest.raises(CommandError, match="no token serves page 1009"):
        run("--page", "1009", "set")
    assert len(mocked.calls) == 0
