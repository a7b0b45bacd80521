"""The page's Messenger Profile: Get Started button, greeting, persistent menu and ice breakers.

The profile is kept in the repository (``messenger/profile.json``) and pushed with
``python manage.py messenger_profile set``; these functions hold the logic, the command only adapts
them. All calls go to ``{MESSENGER_GRAPH_API_URL}/me/messenger_profile`` through the one Graph
client (``messenger.graph``): its pooled session, the page token in an ``Authorization: Bearer``
header (never in the URL, so it cannot leak into error messages or logs), its timeout and scrubber.
Several pages: each call takes ``page_id`` and uses that page's token (``messenger.pages``); without
one, ``MESSENGER_PAGE_ACCESS_TOKEN``. The command picks the page (``--page``, or the only one).

Facebook's limits are checked before anything is sent, so a profile that would be refused is
reported with every problem at once (Messenger Platform reference, Messenger Profile API:
greeting "160 character limit" and a required ``default`` locale; persistent menu "Maximum of 20
items", item title "30 character limit", postback payload "1000 character limit", a ``default``
locale required, nested menus removed in Graph API v8.0; ice breakers "A maximum of 4 questions",
``default`` locale required in the localized format; Get Started payload "1000 character limit").
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from messenger.graph import GraphResponse, GraphUnreachable, graph_request, graph_token, graph_url, scrub
from messenger.pages import page_token

logger = logging.getLogger("messenger.profile")

DEFAULT_PROFILE_FILE = Path(__file__).resolve().with_name("profile.json")

# The fields this module sets and shows; ``delete`` also accepts the other documented properties.
PROFILE_FIELDS = ("get_started", "greeting", "persistent_menu", "ice_breakers")
DELETABLE_FIELDS = (*PROFILE_FIELDS, "whitelisted_domains", "account_linking_url", "commands")

GREETING_MAX_CHARS = 160
MENU_MAX_ITEMS = 20
MENU_TITLE_MAX_CHARS = 30
PAYLOAD_MAX_CHARS = 1000
ICE_BREAKERS_MAX_QUESTIONS = 4
WEBVIEW_HEIGHT_RATIOS = ("compact", "tall", "full")
_MENU_KEYS = {"locale", "composer_input_disabled", "disabled_surfaces", "call_to_actions"}
_MENU_ITEM_KEYS = {
    "type",
    "title",
    "url",
    "payload",
    "webview_height_ratio",
    "messenger_extensions",
    "fallback_url",
    "webview_share_button",
}


class ProfileError(Exception):
    """An expected failure of a profile operation; ``kind`` says which.

    Kinds: ``invalid`` (the profile or field list breaks the rules; ``problems`` lists them all),
    ``no_token`` (MESSENGER_PAGE_ACCESS_TOKEN is not set), ``network`` (no answer), ``graph`` (Graph
    API error: ``status``, ``code``, ``subcode``, ``fbtrace_id`` and ``message`` from its body),
    ``bad_response`` (a 2xx answer that is not the expected JSON). The text never holds the token.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        problems: list[str] | None = None,
        status: int | None = None,
        code: int | None = None,
        subcode: int | None = None,
        fbtrace_id: str = "",
    ) -> None:
        message = scrub(message, mask="***")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.problems = problems or []
        self.status = status
        self.code = code
        self.subcode = subcode
        self.fbtrace_id = fbtrace_id


# --- validation ----------------------------------------------------------------------------------


def _non_empty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _check_locales(items: list, where: str, problems: list[str]) -> None:
    locales = [item.get("locale") for item in items if isinstance(item, dict)]
    if "default" not in locales:
        problems.append(f'{where}: one entry must have "locale": "default" (shown when no locale matches)')
    seen: set[str] = set()
    for locale in locales:
        if locale in seen:
            problems.append(f"{where}: locale {locale!r} appears twice")
        if isinstance(locale, str):
            seen.add(locale)


def _check_text(
    value: Any, where: str, *, limit: int, problems: list[str], missing: str = "expected a non-empty string",
    whose: str = "the",
) -> None:
    """One wording for a text field that must be there and fit Facebook's limit, wherever it stands."""
    if not _non_empty_str(value):
        problems.append(f"{where}: {missing}")
    elif len(value) > limit:
        problems.append(f"{where}: {len(value)} characters; {whose} limit is {limit}")


def _check_keys(value: dict, allowed: set[str] | frozenset[str], where: str, problems: list[str]) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        problems.append(f"{where}: unknown key(s) {unknown}")


def _exactly(value: Any, keys: tuple[str, ...], where: str, problems: list[str]) -> bool:
    """Whether ``value`` is an object with exactly ``keys``; says so in ``problems`` when not."""
    if isinstance(value, dict) and set(value) == set(keys):
        return True
    problems.append(f"{where}: expected exactly {{" + ", ".join(f'"{key}": ...' for key in keys) + "}")
    return False


def _non_empty_list(value: Any, field: str, items: str, problems: list[str]) -> bool:
    """Whether a top-level field is a non-empty list (of ``items``); says so in ``problems`` when not."""
    if isinstance(value, list) and value:
        return True
    problems.append(f"{field}: expected a non-empty list of {items}")
    return False


def _check_locale(locale: Any, where: str, problems: list[str]) -> None:
    if not _non_empty_str(locale):
        problems.append(f"{where}.locale: expected a locale such as 'default' or 'en_US'")


def _check_get_started(value: Any, problems: list[str]) -> None:
    if not isinstance(value, dict) or set(value) != {"payload"}:
        problems.append('get_started: expected {"payload": "..."}')
        return
    _check_text(value["payload"], "get_started.payload", limit=PAYLOAD_MAX_CHARS, problems=problems)


def _check_greeting(value: Any, problems: list[str]) -> None:
    if not _non_empty_list(value, "greeting", '{"locale", "text"}', problems):
        return
    for i, item in enumerate(value):
        where = f"greeting[{i}]"
        if not _exactly(item, ("locale", "text"), where, problems):
            continue
        _check_locale(item["locale"], where, problems)
        _check_text(item["text"], f"{where}.text", limit=GREETING_MAX_CHARS, problems=problems, whose="Facebook's")
    _check_locales(value, "greeting", problems)


def _check_menu_item(item: Any, where: str, problems: list[str]) -> None:
    if not isinstance(item, dict):
        problems.append(f"{where}: expected an object")
        return
    _check_keys(item, _MENU_ITEM_KEYS, where, problems)
    kind = item.get("type")
    _check_text(item.get("title"), f"{where}.title", limit=MENU_TITLE_MAX_CHARS, problems=problems)
    if kind == "postback":
        _check_text(
            item.get("payload"), f"{where}.payload", limit=PAYLOAD_MAX_CHARS, problems=problems,
            missing="a postback item needs a payload",
        )
    elif kind == "web_url":
        url = item.get("url")
        if not (isinstance(url, str) and url.startswith(("https://", "http://"))):
            problems.append(f"{where}.url: a web_url item needs an http(s) URL")
        ratio = item.get("webview_height_ratio")
        if ratio is not None and ratio not in WEBVIEW_HEIGHT_RATIOS:
            problems.append(
                f"{where}.webview_height_ratio: {ratio!r} is not one of {list(WEBVIEW_HEIGHT_RATIOS)}"
            )
    elif kind == "nested":
        problems.append(f"{where}: nested menus were removed in Graph API v8.0; use up to 20 flat items")
    else:
        problems.append(f"{where}.type: {kind!r} is not 'postback' or 'web_url'")


def _check_persistent_menu(value: Any, problems: list[str]) -> None:
    if not _non_empty_list(value, "persistent_menu", '{"locale", "call_to_actions"}', problems):
        return
    for i, menu in enumerate(value):
        where = f"persistent_menu[{i}]"
        if not isinstance(menu, dict):
            problems.append(f"{where}: expected an object")
            continue
        _check_keys(menu, _MENU_KEYS, where, problems)
        _check_locale(menu.get("locale"), where, problems)
        disabled = menu.get("composer_input_disabled", False)
        if not isinstance(disabled, bool):
            problems.append(f"{where}.composer_input_disabled: expected true or false")
        actions = menu.get("call_to_actions")
        if actions is None:
            if disabled:
                problems.append(f"{where}.call_to_actions: required when composer_input_disabled is true")
            continue
        if not isinstance(actions, list) or not actions:
            problems.append(f"{where}.call_to_actions: expected a non-empty list")
            continue
        if len(actions) > MENU_MAX_ITEMS:
            problems.append(f"{where}.call_to_actions: {len(actions)} items; the limit is {MENU_MAX_ITEMS}")
        for j, item in enumerate(actions):
            _check_menu_item(item, f"{where}.call_to_actions[{j}]", problems)
    _check_locales(value, "persistent_menu", problems)


def _check_ice_breakers(value: Any, problems: list[str]) -> None:
    if not _non_empty_list(value, "ice_breakers", '{"locale", "call_to_actions"}', problems):
        return
    for i, block in enumerate(value):
        where = f"ice_breakers[{i}]"
        if isinstance(block, dict) and "question" in block:
            problems.append(
                f'{where}: the old unlocalized format is deprecated; use {{"locale": "default", '
                '"call_to_actions": [{"question": ..., "payload": ...}]}'
            )
            continue
        if not isinstance(block, dict) or set(block) != {"locale", "call_to_actions"}:
            problems.append(f'{where}: expected exactly {{"locale": ..., "call_to_actions": [...]}}')
            continue
        _check_locale(block["locale"], where, problems)
        questions = block["call_to_actions"]
        if not isinstance(questions, list) or not questions:
            problems.append(f"{where}.call_to_actions: expected a non-empty list")
            continue
        if len(questions) > ICE_BREAKERS_MAX_QUESTIONS:
            problems.append(
                f"{where}.call_to_actions: {len(questions)} questions; "
                f"the limit is {ICE_BREAKERS_MAX_QUESTIONS}"
            )
        for j, question in enumerate(questions):
            qwhere = f"{where}.call_to_actions[{j}]"
            if not _exactly(question, ("question", "payload"), qwhere, problems):
                continue
            if not _non_empty_str(question["question"]):
                problems.append(f"{qwhere}.question: expected a non-empty string")
            if not _non_empty_str(question["payload"]):
                problems.append(f"{qwhere}.payload: expected a non-empty string")
            elif len(question["payload"]) > PAYLOAD_MAX_CHARS:
                problems.append(f"{qwhere}.payload: longer than {PAYLOAD_MAX_CHARS} characters")
    _check_locales(value, "ice_breakers", problems)


_CHECKS = {
    "get_started": _check_get_started,
    "greeting": _check_greeting,
    "persistent_menu": _check_persistent_menu,
    "ice_breakers": _check_ice_breakers,
}


def profile_validate(*, profile: Any) -> list[str]:
    """Every problem of ``profile`` against Facebook's documented limits; empty when it can be sent."""
    if not isinstance(profile, dict):
        return ["the profile must be a JSON object"]
    problems: list[str] = []
    unknown = sorted(key for key in profile if key not in _CHECKS)
    if unknown:
        problems.append(f"unknown field(s) {unknown}; this command sets {list(PROFILE_FIELDS)}")
    if not any(key in profile for key in _CHECKS):
        problems.append(f"nothing to set: the profile has none of {list(PROFILE_FIELDS)}")
    for key, check in _CHECKS.items():
        if key in profile:
            check(profile[key], problems)
    return problems


def _invalid(source: str, problems: list[str]) -> ProfileError:
    listed = "\n".join(f"  - {problem}" for problem in problems)
    return ProfileError("invalid", f"{source} is not a valid Messenger profile:\n{listed}", problems=problems)


def profile_load(path: str | os.PathLike[str] = DEFAULT_PROFILE_FILE) -> dict:
    """The profile in the JSON file at ``path``, validated, ready to send.

    Top-level keys starting with ``_`` are notes for staff and are dropped. Raises ``ProfileError``
    (``invalid``) naming the file and listing every problem.
    """
    source = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError("invalid", f"{source} cannot be read: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ProfileError(
            "invalid", f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from exc
    if isinstance(data, dict):
        data = {key: value for key, value in data.items() if not key.startswith("_")}
    problems = profile_validate(profile=data)
    if problems:
        raise _invalid(source, problems)
    return data


def profile_fields_check(*, fields: list[str] | tuple[str, ...]) -> list[str]:
    """``fields`` without duplicates, in order; ``ProfileError`` (``invalid``) for unknown names."""
    if not fields:
        raise ProfileError("invalid", "name at least one field", problems=["no fields"])
    unknown = [field for field in fields if field not in DELETABLE_FIELDS]
    if unknown:
        problems = [f"{field!r} is not a Messenger Profile field" for field in unknown]
        raise ProfileError(
            "invalid", f"unknown field(s) {unknown}; choose from {list(DELETABLE_FIELDS)}", problems=problems
        )
    return list(dict.fromkeys(fields))


# --- the requests ----------------------------------------------------------------------------------


_PATH = "/me/messenger_profile"


def profile_url() -> str:
    """The Messenger Profile endpoint of the configured Graph API version."""
    return graph_url(_PATH)


def profile_encode(*, body: dict) -> str:
    """The exact JSON text sent for ``body`` (dry runs print this same text)."""
    return json.dumps(body, ensure_ascii=False, indent=2)


def profile_delete_body(*, fields: list[str] | tuple[str, ...]) -> dict:
    """The body of a delete request: ``{"fields": [...]}`` after checking the names."""
    return {"fields": profile_fields_check(fields=fields)}


def _graph_error(response: GraphResponse) -> ProfileError:
    error = response.error
    message = error.message or response.reason or "no message"
    code, subcode = error.code, error.subcode
    parts = [f"code {code}" if code is not None else "", f"subcode {subcode}" if subcode is not None else ""]
    where = ", ".join(part for part in parts if part)
    text = f"Graph API refused the request (HTTP {response.status}"
    text += f", {where}): {message}" if where else f"): {message}"
    if error.fbtrace_id:
        text += f" [fbtrace_id {error.fbtrace_id}]"
    return ProfileError(
        "graph", text, status=response.status, code=code, subcode=subcode, fbtrace_id=error.fbtrace_id
    )


def _request(method: str, *, body: dict | None = None, params: dict | None = None, page_id: str = "") -> dict:
    """One Graph API call with ``page_id``'s token (``messenger.pages``; none: the env token)."""
    token = page_token(page_id=page_id) if page_id else graph_token()
    if not token:
        if page_id:
            raise ProfileError("no_token", f"no token serves page {page_id}: nothing can be sent")
        raise ProfileError("no_token", "MESSENGER_PAGE_ACCESS_TOKEN is not set: nothing can be sent")
    headers = None
    data = None
    if body is not None:
        # Sent as encoded here, not by requests, so a dry run prints the very bytes a real run sends.
        headers = {"Content-Type": "application/json"}
        data = profile_encode(body=body).encode("utf-8")
    try:
        response = graph_request(method, _PATH, data=data, params=params, headers=headers, token=token)
    except GraphUnreachable as exc:
        error = ProfileError("network", f"no answer from the Graph API ({exc.exc_name})")
        logger.warning("messenger.profile.failed", extra={"method": method, "error_kind": "network"})
        raise error from exc
    if not response.is_success:
        error = _graph_error(response)
        logger.warning(
            "messenger.profile.failed",
            extra={
                "method": method,
                "error_kind": "graph",
                "status": error.status,
                "code": error.code,
                "fbtrace_id": error.fbtrace_id,
            },
        )
        raise error
    if not response.is_json:
        raise ProfileError("bad_response", f"the Graph API answered HTTP {response.status} without JSON")
    answer = response.payload
    if not isinstance(answer, dict):
        raise ProfileError("bad_response", "the Graph API answered with JSON that is not an object")
    return answer


def profile_set(*, profile: dict, page_id: str = "") -> dict:
    """POST ``profile`` (validated first) to the Messenger Profile API; Facebook's answer.

    Only the fields present are changed; others stay as they are on the page.
    """
    problems = profile_validate(profile=profile)
    if problems:
        raise _invalid("the profile", problems)
    answer = _request("POST", body=profile, page_id=page_id)
    logger.info("messenger.profile.set", extra={"fields": sorted(profile)})
    return answer


def profile_show(*, fields: list[str] | tuple[str, ...] = PROFILE_FIELDS, page_id: str = "") -> dict:
    """The page's current profile for ``fields`` (Graph's ``data[0]``; ``{}`` when none is set)."""
    names = profile_fields_check(fields=fields)
    answer = _request("GET", params={"fields": ",".join(names)}, page_id=page_id)
    data = answer.get("data")
    if isinstance(data, list):
        return data[0] if data and isinstance(data[0], dict) else {}
    return answer


def profile_delete(*, fields: list[str] | tuple[str, ...], page_id: str = "") -> dict:
    """DELETE ``fields`` from the page's profile; Facebook's answer."""
    body = profile_delete_body(fields=fields)
    answer = _request("DELETE", body=body, page_id=page_id)
    logger.info("messenger.profile.deleted", extra={"fields": body["fields"]})
    return answer
