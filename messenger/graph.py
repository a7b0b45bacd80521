"""The one Graph API client: session, page token, timeout, scrubbing and Facebook's error envelope.

Every call this app makes to Facebook's Graph API goes through :func:`graph_request`: the Send API
(``messenger.send_api``: messages and sender actions), the Messenger Profile
(``messenger.profile``, behind the ``messenger_profile`` command) and Conversation Routing's
``pass_thread_control`` / ``take_thread_control`` (``messenger.handover``). So, for all of them:

* **One pooled session per process.** A ``requests.Session`` keeps connections to Facebook open
  between calls; a forked child (an rq job) builds its own, since sockets must not be shared with
  the parent. urllib3 never retries: whether to retry is the caller's decision (the Send API retries
  with tenacity behind the circuit breaker; the profile command does not retry at all).
* **The page token in an** ``Authorization: Bearer`` **header**, not in the ``access_token`` query
  parameter that Messenger's examples show. The Graph API accepts both; the header keeps the token
  out of every URL, so it cannot leak through ``requests`` exception texts (they quote the URL),
  urllib3's DEBUG line (``"POST /v25.0/me/messages?... HTTP/1.1" 200``), ``Response.url`` or proxy
  access logs. As a second line of defence, any text that could hold it goes through :func:`scrub`.
* **The timeout** ``MESSENGER_SEND_TIMEOUT_MS`` bounds each HTTP call (connect and read each); it is
  read when the call is made, so ``override_settings`` works.
* **No answer** (network error, timeout) raises :class:`GraphUnreachable`, whose text is scrubbed.
  **An answer**, whatever its status, is a :class:`GraphResponse`; :func:`graph_error_parse` reads
  Facebook's error envelope (``{"error": {"message", "type", "code", "error_subcode",
  "fbtrace_id"}}``, Graph API "Handling Errors") into a :class:`GraphError`.
* **Meta's usage headers** (``X-App-Usage``, ``X-Page-Usage``, ``X-Business-Use-Case-Usage``) are
  parsed on every answer, success or error, into ``GraphResponse.usage`` (``messenger.usage``,
  which never raises on odd values).

What an error *means* (retry it? the recipient's fault? the token's?) is decided in
``messenger.graph_errors``, next to the error-code tables. This module logs nothing: callers log with
their own context and logger names (``messenger.send``, ``messenger.profile``).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from messenger.usage import GraphUsage, usage_parse

REDACTED = "[redacted]"


# --- the pooled session -----------------------------------------------------------------------
_session: requests.Session | None = None
_session_pid: int | None = None
_session_lock = threading.Lock()


def get_session() -> requests.Session:
    """One pooled session per process; a forked child builds its own (sockets are not shared)."""
    global _session, _session_pid
    session = _session
    if session is not None and _session_pid == os.getpid():
        return session
    with _session_lock:
        if _session is None or _session_pid != os.getpid():
            session = requests.Session()
            # Retries are the caller's (tenacity + circuit); urllib3 must not retry behind its back.
            # Kept-alive connections for every thread of a worker process (its messages and sender actions).
            size = max(16, settings.MESSENGER_WORKER_CONCURRENCY + 8)
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=size, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            _session, _session_pid = session, os.getpid()
        return _session


def reset_session() -> None:
    """Close and drop the pooled session (tests; a process that wants fresh connections)."""
    global _session, _session_pid
    with _session_lock:
        if _session is not None and _session_pid == os.getpid():
            _session.close()
        _session, _session_pid = None, None


def _forget_session_in_child() -> None:
    # The child must not use (or close) sockets it shares with its parent: just drop the reference.
    global _session, _session_pid
    _session, _session_pid = None, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_session_in_child)


# --- token, URL, timeout, scrubbing -----------------------------------------------------------
def graph_token() -> str:
    """``MESSENGER_PAGE_ACCESS_TOKEN``, or ``""``: the token of a call that names no page.

    A call for a page passes that page's token (``messenger.pages.page_token``) as ``token=``.
    """
    return settings.MESSENGER_PAGE_ACCESS_TOKEN


def graph_url(path: str) -> str:
    """``path`` (``"/me/messages"``) under the configured Graph API version; never a token in it."""
    return f"{settings.MESSENGER_GRAPH_API_URL.rstrip('/')}/{path.lstrip('/')}"


def graph_timeout() -> float:
    """Seconds allowed to each of connect and read, from ``MESSENGER_SEND_TIMEOUT_MS``."""
    return max(0.001, settings.MESSENGER_SEND_TIMEOUT_MS / 1000)


_QUERY_TOKEN = re.compile(r"(access_token=)[^&\s'\"]+", re.IGNORECASE)
_BEARER = re.compile(r"(bearer\s+)[A-Za-z0-9._\-|]+", re.IGNORECASE)


def scrub(text: str, *, mask: str = REDACTED) -> str:
    """``text`` with the page token, and anything shaped like one, replaced by ``mask``.

    Shaped like one: the value of an ``access_token=`` query parameter and the credential after
    ``Bearer``, so a token other than the configured one (a rotated or another page's) is caught too.
    """
    token = graph_token()
    if token:
        text = text.replace(token, mask)
    text = _QUERY_TOKEN.sub(lambda match: match.group(1) + mask, text)
    return _BEARER.sub(lambda match: match.group(1) + mask, text)


# --- answers and errors -----------------------------------------------------------------------
def _as_int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class GraphError:
    """Facebook's error envelope, parsed; every field empty when the answer had none.

    ``code`` and ``subcode`` are ints or ``None`` whatever JSON type Facebook used; ``message`` is as
    Facebook wrote it (it may quote what was sent: scrub before showing it); ``fbtrace_id`` is the id
    Facebook support asks for.
    """

    http_status: int | None = None
    code: int | None = None
    subcode: int | None = None
    message: str = ""
    type: str = ""
    fbtrace_id: str = ""
    is_transient: bool = False


def graph_error_parse(*, http_status: int | None, body: Any) -> GraphError:
    """The :class:`GraphError` in ``body`` (parsed JSON, or ``None`` when the answer was not JSON).

    Pure and total: any shape, even a list or a string, gives a ``GraphError``. ``fbtrace_id`` is
    taken from the envelope, or else from the top level of the body.
    """
    envelope = body.get("error") if isinstance(body, dict) else None
    if not isinstance(envelope, dict):
        envelope = {}
    trace = envelope.get("fbtrace_id") or (body.get("fbtrace_id") if isinstance(body, dict) else "") or ""
    return GraphError(
        http_status=http_status,
        code=_as_int(envelope.get("code")),
        subcode=_as_int(envelope.get("error_subcode")),
        message=str(envelope.get("message") or ""),
        type=str(envelope.get("type") or ""),
        fbtrace_id=str(trace),
        is_transient=envelope.get("is_transient") is True,
    )


@dataclass(frozen=True)
class GraphResponse:
    """An answer from the Graph API, whatever its HTTP status.

    ``payload`` is the parsed JSON body, ``None`` when ``is_json`` is false (an empty or HTML body);
    ``usage`` the figures of Meta's usage headers (empty when there were none).
    """

    status: int
    reason: str = ""
    payload: Any = None
    is_json: bool = False
    usage: GraphUsage = field(default_factory=GraphUsage)

    @property
    def is_success(self) -> bool:
        """A 2xx answer; some callers also check that the body holds no ``error``."""
        return 200 <= self.status < 300

    @property
    def has_error_envelope(self) -> bool:
        return isinstance(self.payload, dict) and "error" in self.payload

    @property
    def error(self) -> GraphError:
        """Facebook's error envelope in this answer (all fields empty when there is none)."""
        return graph_error_parse(http_status=self.status, body=self.payload)


class GraphUnreachable(Exception):
    """No answer from the Graph API: the request raised (connection refused, timeout, ...).

    Its text, ``"<ExceptionName>: <details>"``, is scrubbed of the token. ``cause`` is the
    ``requests`` exception (its own text is *not* scrubbed: never log it) and ``exc_name`` its class
    name, for messages that want no details at all.
    """

    def __init__(self, cause: requests.RequestException) -> None:
        self.cause = cause
        self.exc_name = type(cause).__name__
        super().__init__(scrub(f"{self.exc_name}: {cause}"))


# --- the request ------------------------------------------------------------------------------
def graph_request(
    method: str,
    path: str,
    *,
    json: Any = None,
    data: bytes | None = None,
    params: dict | None = None,
    headers: dict | None = None,
    token: str | None = None,
) -> GraphResponse:
    """One HTTP call to the Graph API over the pooled session, authenticated with the page token.

    Precondition: a page token is configured (:func:`graph_token`); callers check first, because a
    missing token means a dry run to the Send API and an error to the profile command. Send ``json``
    (serialised by ``requests``) or ``data`` (bytes sent as they are, with the caller's
    ``Content-Type``). ``token`` is another page's token (``messenger.pages``); by default the
    configured one. Never retries. Raises :class:`GraphUnreachable` when there is no answer; any
    answer, error or not, is returned.
    """
    token = token or graph_token()
    if not token:
        raise ValueError("graph_request needs a page token: token=, or graph_token() (MESSENGER_PAGE_ACCESS_TOKEN)")
    # One auth header, always ours: a caller's own Authorization could not mean anything else.
    sent_headers = {"Authorization": f"Bearer {token}"}
    sent_headers.update({key: value for key, value in (headers or {}).items() if key.lower() != "authorization"})
    try:
        response = get_session().request(
            method,
            graph_url(path),
            json=json,
            data=data,
            params=params,
            headers=sent_headers,
            timeout=graph_timeout(),
        )
    except requests.RequestException as exc:
        raise GraphUnreachable(exc) from exc
    try:
        payload, is_json = response.json(), True
    except ValueError:
        payload, is_json = None, False
    return GraphResponse(
        status=response.status_code,
        reason=response.reason or "",
        payload=payload,
        is_json=is_json,
        usage=usage_parse(response.headers),
    )
