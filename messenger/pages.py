"""The pages this channel serves, with their tokens: the one place that lists them.

Two sources, in this order of precedence:

1. **Pages in the database** (``messenger.models.Page``, added with ``manage.py messenger_page add``):
   each its own token, encrypted at rest (``messenger.token_crypto``). An inactive row is a page
   deliberately not served, whatever the environment says.
2. **The one-page setup**: ``MESSENGER_PAGE_ACCESS_TOKEN``, with the page it belongs to in
   ``MESSENGER_PAGE_ID``. A database page of the same id wins. Without ``MESSENGER_PAGE_ID`` the
   environment token serves every page the database does not name (as before pages existed).

A page id neither source names is not served: its events are kept as ``unknown_page`` and not
answered (``messenger.pipeline``). With no page configured at all the channel is in dry-run mode
(sends are logged, not made: ``messenger.send_api``) and every page is served that way, so a fresh
clone and ``messenger_simulate`` keep working.

Every caller (the send path, the token gate, ``messenger_check``, ``messenger_profile``, Sentry's
scrubber, ``/metrics``) reads through :func:`pages_configured` / :func:`page_token`. The database
is read at most once per :data:`PAGES_CACHE_SECONDS` per process (a send asks for its page's token),
and at once after this process writes a page; another process sees a new or replaced token within
that delay. Tokens are decrypted into process memory only, like the environment token.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from messenger.models import Page
from messenger.token_crypto import token_decrypt, token_encrypt, token_reencrypt

logger = logging.getLogger("messenger.pages")

# How long one process trusts its copy of the page table before reading it again.
PAGES_CACHE_SECONDS = 10.0
SOURCE_DATABASE = "database"
SOURCE_ENVIRONMENT = "environment"


@dataclass(frozen=True)
class PageCredentials:
    """One page and the token that acts for it.

    ``page_id`` may be ``""`` in the one-page setup when ``MESSENGER_PAGE_ID`` is unset (the token
    then says which page it belongs to). ``token`` is left out of ``repr`` so a page never prints it.
    ``source`` is :data:`SOURCE_DATABASE` or :data:`SOURCE_ENVIRONMENT`.
    """

    page_id: str
    name: str = ""
    token: str = field(default="", repr=False)
    source: str = SOURCE_ENVIRONMENT


@dataclass(frozen=True)
class _Snapshot:
    served: tuple[PageCredentials, ...]  # active database pages with a readable token, by id
    inactive: frozenset[str]  # database pages not served: inactive, or a token no key decrypts
    read_at: float
    unreadable: frozenset[str] = frozenset()  # of those, the ones whose token no key decrypts


# Replaced whole, never changed in place: a reference assignment is atomic, so threads need no lock
# (and a forked rq work horse can never inherit a held one). Two threads may both read the table.
_snapshot: _Snapshot | None = None


def pages_cache_clear() -> None:
    """Forget this process's copy of the page table (after a write; tests)."""
    global _snapshot
    _snapshot = None


def pages_cache_prime_empty() -> None:
    """Believe there are no database pages until the next write (tests: no query per send)."""
    global _snapshot
    _snapshot = _Snapshot(served=(), inactive=frozenset(), read_at=float("inf"))


def _database_pages() -> _Snapshot:
    global _snapshot
    snapshot = _snapshot
    now = time.monotonic()
    if snapshot is not None and (snapshot.read_at == float("inf") or now - snapshot.read_at < PAGES_CACHE_SECONDS):
        return snapshot
    served: list[PageCredentials] = []
    inactive: set[str] = set()
    unreadable: set[str] = set()
    for row in Page.objects.order_by("id").only("id", "name", "token_encrypted", "active"):
        if not row.active:
            inactive.add(row.id)
            continue
        try:
            token = token_decrypt(ciphertext=row.token_encrypted)
        except Exception as exc:  # noqa: BLE001 - one unreadable row must not hide the other pages
            # Its events are kept as unknown_page; the ERROR says why (a key removed too early, no keys).
            logger.error("messenger.pages.token-unreadable", extra={"page_id": row.id, "error": type(exc).__name__})
            inactive.add(row.id)
            unreadable.add(row.id)
            continue
        served.append(PageCredentials(page_id=row.id, name=row.name, token=token, source=SOURCE_DATABASE))
    snapshot = _Snapshot(
        served=tuple(served), inactive=frozenset(inactive), read_at=now, unreadable=frozenset(unreadable)
    )
    _snapshot = snapshot
    return snapshot


def _environment_page(database: _Snapshot) -> PageCredentials | None:
    """The one-page setup, read from the settings on every call (``override_settings`` works)."""
    token = settings.MESSENGER_PAGE_ACCESS_TOKEN
    page_id = settings.MESSENGER_PAGE_ID
    if not token or page_id in database.inactive or any(page.page_id == page_id for page in database.served):
        return None
    return PageCredentials(page_id=page_id, name="", token=token, source=SOURCE_ENVIRONMENT)


def pages_configured() -> list[PageCredentials]:
    """Every page with a token: database pages by id, then the environment's; ``[]`` when none."""
    database = _database_pages()
    environment = _environment_page(database)
    return [*database.served, *([environment] if environment else [])]


def pages_unreadable() -> list[str]:
    """Active database pages whose stored token no configured key decrypts (``messenger_check`` names them)."""
    return sorted(_database_pages().unreadable)


def pages_tokens_in_memory() -> list[str]:
    """Every token this process holds now, without a query: for scrubbers (Sentry's hook must not
    query the database, whose own breadcrumbs would call it again). A database token is in memory
    only once this process has read the page table, which is when it could leak."""
    snapshot = _snapshot
    tokens = [page.token for page in snapshot.served] if snapshot is not None else []
    return [*tokens, *([settings.MESSENGER_PAGE_ACCESS_TOKEN] if settings.MESSENGER_PAGE_ACCESS_TOKEN else [])]


def page_token(*, page_id: str) -> str:
    """The token the channel acts with for ``page_id``; ``""`` when no page of that id is served.

    The exact page first (database, then ``MESSENGER_PAGE_ID``); else the environment token set
    without ``MESSENGER_PAGE_ID``, which serves any page the database does not name.
    """
    database = _database_pages()
    if page_id in database.inactive:
        return ""
    for page in database.served:
        if page_id and page.page_id == page_id:
            return page.token
    environment = _environment_page(database)
    if environment is not None and environment.page_id in ("", page_id):
        return environment.token
    return ""


def pages_dry_run() -> bool:
    """No page has a token: sends are dry runs, and every page is served that way (module docstring)."""
    return not pages_configured()


def page_served(*, page_id: str) -> bool:
    """Whether events of ``page_id`` get an answer: it has a token, or the channel is in dry-run mode."""
    if page_id in _database_pages().inactive:
        return False
    return pages_dry_run() or bool(page_token(page_id=page_id))


class PageChoiceError(ValueError):
    """``--page`` names no served page, or is missing while several pages are served."""


def page_choose(*, page_id: str | None) -> PageCredentials | None:
    """The page a command acts for (``messenger_profile --page``); ``None`` when no page is configured.

    ``page_id`` given: that page, if a token serves it. Not given: the only page, or
    :class:`PageChoiceError` naming the choices when there are several.
    """
    configured = pages_configured()
    if page_id:
        token = page_token(page_id=page_id)
        if not token:
            raise PageChoiceError(f"no token serves page {page_id}; see `manage.py messenger_page list`")
        return next((page for page in configured if page.page_id == page_id), None) or PageCredentials(
            page_id=page_id, token=token
        )
    if len(configured) > 1:
        names = ", ".join(page.page_id or "(MESSENGER_PAGE_ACCESS_TOKEN)" for page in configured)
        raise PageChoiceError(f"several pages are served ({names}): choose one with --page PAGE_ID")
    return configured[0] if configured else None


# --- writes: the messenger_page command and the admin ------------------------------------------
def _written() -> None:
    # Now, for this transaction's own reads, and again at commit, for a read in between.
    pages_cache_clear()
    transaction.on_commit(pages_cache_clear)


@transaction.atomic
def page_add(*, page_id: str, name: str, token: str) -> tuple[Page, bool]:
    """Store ``page_id`` with ``token`` encrypted; an existing page gets the new token (and name).

    Returns the row and whether it was created. The row is active afterwards. Raises ``ValueError``
    for an empty page id or token (a token is never part of that message).
    """
    page_id, token = page_id.strip(), token.strip()
    if not page_id or not token:
        raise ValueError("a page needs an id and a non-empty token")
    ciphertext = token_encrypt(token=token)
    page, created = Page.objects.select_for_update().get_or_create(
        id=page_id, defaults={"name": name, "token_encrypted": ciphertext}
    )
    if not created:
        page.token_encrypted = ciphertext
        page.name = name or page.name
        page.active = True
        page.updated_at = timezone.now()
        page.save(update_fields=["token_encrypted", "name", "active", "updated_at"])
    _written()
    logger.info("messenger.pages.added" if created else "messenger.pages.token-replaced", extra={"page_id": page_id})
    return page, created


def page_token_replace(*, page: Page, token: str) -> None:
    """Encrypt ``token`` into ``page`` (unsaved: the admin's form saves it with its other fields)."""
    page.token_encrypted = token_encrypt(token=token.strip())
    page.updated_at = timezone.now()


@transaction.atomic
def page_remove(*, page_id: str) -> bool:
    """Delete ``page_id``; returns whether it existed. Its kept messages and conversations stay."""
    deleted, _ = Page.objects.filter(id=page_id).delete()
    _written()
    if deleted:
        logger.info("messenger.pages.removed", extra={"page_id": page_id})
    return bool(deleted)


@transaction.atomic
def pages_rotate() -> int:
    """Re-encrypt every stored token under the first key of ``MESSENGER_TOKEN_KEYS``; returns how many.

    Raises ``messenger.token_crypto.TokenUnreadable`` (and changes nothing) when a token cannot be
    decrypted with any configured key: the old key must stay until this has run.
    """
    rows = list(Page.objects.select_for_update().order_by("id"))
    for row in rows:
        row.token_encrypted = token_reencrypt(ciphertext=row.token_encrypted)
    Page.objects.bulk_update(rows, ["token_encrypted"])
    _written()
    logger.info("messenger.pages.rotated", extra={"pages": len(rows)})
    return len(rows)
