"""Is each page ready to chat? Its token, its webhook subscription and the webhook itself.

Behind ``python manage.py messenger_check``: one :class:`CheckRow` per check and page, each saying
what was found and, for a problem, what to do. Checks call Facebook through the one Graph client
(``messenger.graph``) and never print or log a token: Graph texts go through ``scrub`` and request
errors are named by their class only (``requests`` quotes the URL, and the webhook URL carries the
verify token in its query).

* **token**: ``GET /me?fields=id,name`` with the page's token. A page token answers with its page;
  the id must be the page's. Code 190 is Facebook's "invalid OAuth access token" (expired,
  revoked, or the password of its user changed): the token must be replaced.
* **subscription**: ``GET /{page-id}/subscribed_apps``. Facebook's "Page Subscribed Apps" reference
  (https://developers.facebook.com/docs/graph-api/reference/page/subscribed_apps) answers
  ``{"data": [{"id", "name", "category", "link", "subscribed_fields": [...]}, ...], "paging": {}}``,
  one item per app subscribed to the page's webhooks. This app (``MESSENGER_APP_ID``; without it,
  the only app subscribed) must have every field of :data:`REQUIRED_FIELDS`. The same page notes
  that only fields subscribed at both the page and the app level are delivered: the app level is
  the app dashboard's Webhooks product, which a page token cannot read.
* **webhook**: ``GET`` the public webhook URL the way Facebook verifies it (``hub.mode=subscribe``,
  ``hub.verify_token``, a random ``hub.challenge``) and expect 200 with the challenge back. The URL
  is ``--webhook-url`` or ``MESSENGER_WEBHOOK_URL``; with neither, the row is a problem ("not
  checked"): a check that silently skips the webhook would pass while Facebook cannot reach us.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass

import requests
from django.conf import settings

from messenger.graph import GraphUnreachable, get_session, graph_request, graph_timeout, scrub
from messenger.pages import PageCredentials

# The webhook fields the channel needs, and why: messages and postbacks are what users send;
# echoes tell our sends from a person's (Page Inbox); reactions are kept on messages; handovers and
# standby carry the conversation while another app (a human in the Page Inbox) has the thread.
REQUIRED_FIELDS = (
    "messages",
    "messaging_postbacks",
    "message_echoes",
    "message_reactions",
    "messaging_handovers",
    "standby",
)
INVALID_TOKEN_CODE = 190
ALL_PAGES = "(all)"


@dataclass(frozen=True)
class CheckRow:
    """One check of one page: ``ok``, and ``detail`` saying what was found and what to do."""

    page: str
    check: str
    ok: bool
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


def _graph_problem(response, *, token: str) -> str:
    error = response.error
    if error.code == INVALID_TOKEN_CODE:
        sub = f"/{error.subcode}" if error.subcode else ""
        return (
            f"token invalid or expired (Graph code 190{sub}): generate a new page token and set "
            "MESSENGER_PAGE_ACCESS_TOKEN"
        )
    message = scrub(error.message).replace(token, "[redacted]") if token else scrub(error.message)
    code = error.code if error.code is not None else f"HTTP {response.status}"
    return f"Graph refused (code {code}: {message or response.reason}); see the fbtrace_id {error.fbtrace_id or '-'}"


def _unreachable(exc: GraphUnreachable) -> str:
    return f"Graph API unreachable ({exc.exc_name}): check the network and MESSENGER_GRAPH_API_URL"


def check_token(*, page: PageCredentials) -> tuple[CheckRow, str]:
    """The token row, and the page id the token belongs to (``""`` when the token does not work)."""
    label = page.page_id or "(MESSENGER_PAGE_ID unset)"
    try:
        response = graph_request("GET", "/me", params={"fields": "id,name"}, token=page.token)
    except GraphUnreachable as exc:
        return CheckRow(label, "token", False, _unreachable(exc)), ""
    if not response.is_success or response.has_error_envelope or not isinstance(response.payload, dict):
        return CheckRow(label, "token", False, _graph_problem(response, token=page.token)), ""
    owner = str(response.payload.get("id") or "")
    name = str(response.payload.get("name") or "")
    if page.page_id and owner != page.page_id:
        detail = f"the token belongs to {owner} ({name}), not to page {page.page_id}: use that page's token"
        return CheckRow(label, "token", False, detail), ""
    detail = f"valid, page {owner} ({name})"
    if not page.page_id:
        detail += f"; set MESSENGER_PAGE_ID={owner} to pin it"
    return CheckRow(label, "token", True, detail), owner


def check_subscription(*, page: PageCredentials, page_id: str) -> CheckRow:
    """This app subscribed to ``page_id`` with every field of :data:`REQUIRED_FIELDS`."""
    label = page.page_id or page_id
    try:
        response = graph_request("GET", f"/{page_id}/subscribed_apps", token=page.token)
    except GraphUnreachable as exc:
        return CheckRow(label, "subscription", False, _unreachable(exc))
    payload = response.payload if isinstance(response.payload, dict) else {}
    if not response.is_success or response.has_error_envelope:
        return CheckRow(label, "subscription", False, _graph_problem(response, token=page.token))
    apps = [app for app in payload.get("data") or [] if isinstance(app, dict)]
    subscribe = (
        f"subscribe it: POST /{page_id}/subscribed_apps with subscribed_fields={','.join(REQUIRED_FIELDS)}"
    )
    app_id = settings.MESSENGER_APP_ID
    if app_id:
        ours = [app for app in apps if str(app.get("id")) == app_id]
    elif len(apps) > 1:
        names = ", ".join(str(app.get("id")) for app in apps)
        return CheckRow(label, "subscription", False, f"several apps subscribed ({names}): set MESSENGER_APP_ID")
    else:
        ours = apps
    if not ours:
        who = f"app {app_id}" if app_id else "no app"
        return CheckRow(label, "subscription", False, f"{who} is not subscribed to the page: {subscribe}")
    fields = {str(name) for name in ours[0].get("subscribed_fields") or []}
    missing = [name for name in REQUIRED_FIELDS if name not in fields]
    if missing:
        return CheckRow(label, "subscription", False, f"missing fields: {', '.join(missing)}; {subscribe}")
    return CheckRow(label, "subscription", True, f"app {ours[0].get('id')} has {', '.join(REQUIRED_FIELDS)}")


def check_webhook(*, url: str) -> CheckRow:
    """The webhook at ``url`` answers Facebook's verification GET with the challenge."""
    if not url:
        return CheckRow(ALL_PAGES, "webhook", False, "not checked: set MESSENGER_WEBHOOK_URL (or --webhook-url)")
    if not settings.MESSENGER_VERIFY_TOKEN:
        return CheckRow(ALL_PAGES, "webhook", False, "MESSENGER_VERIFY_TOKEN is not set: Facebook cannot verify")
    challenge = secrets.token_hex(8)
    params = {"hub.mode": "subscribe", "hub.verify_token": settings.MESSENGER_VERIFY_TOKEN, "hub.challenge": challenge}
    try:
        response = get_session().get(url, params=params, timeout=graph_timeout(), allow_redirects=False)
    except requests.RequestException as exc:
        detail = f"{url} unreachable ({type(exc).__name__}): check DNS, TLS and that the web is up"
        return CheckRow(ALL_PAGES, "webhook", False, detail)
    if response.status_code == 403:
        detail = f"{url} refused the verify token (403): MESSENGER_VERIFY_TOKEN differs from the server's"
        return CheckRow(ALL_PAGES, "webhook", False, detail)
    if response.status_code != 200 or response.text.strip() != challenge:
        detail = f"{url} answered HTTP {response.status_code} without the challenge: is it the V2 webhook?"
        return CheckRow(ALL_PAGES, "webhook", False, detail)
    return CheckRow(ALL_PAGES, "webhook", True, f"{url} answers the verification")


def pages_check(*, pages: list[PageCredentials], webhook_url: str) -> list[CheckRow]:
    """Every check of every page, then the webhook (one per deployment); a problem never stops the rest."""
    if not pages:
        rows = [CheckRow(ALL_PAGES, "token", False, "no page configured: set MESSENGER_PAGE_ACCESS_TOKEN")]
    else:
        rows = []
    for page in pages:
        token_row, owner = check_token(page=page)
        rows.append(token_row)
        if owner:
            rows.append(check_subscription(page=page, page_id=owner))
        else:
            rows.append(CheckRow(token_row.page, "subscription", False, "not checked: the token does not work"))
    rows.append(check_webhook(url=webhook_url))
    return rows
