"""Tests for messenger/pages.py: several pages, each answered with its own token; the env one-page setup.

End to end where the issue asks for it: a signed webhook, a worker, and the Send API call's
``Authorization`` header as the mocked Graph API (``responses``) received it.
"""

from __future__ import annotations

import logging

import pytest
from django.test import override_settings

from messenger.models import InboundMessage, Page
from messenger.pages import (
    page_add,
    page_remove,
    page_served,
    page_token,
    pages_cache_clear,
    pages_configured,
    pages_dry_run,
    pages_rotate,
)
from messenger.token_crypto import token_decrypt
from tests.messenger.helpers import GRAPH, run_worker, text_body

pytestmark = pytest.mark.django_db

PAGE_A, PAGE_B, PAGE_C = "111111111111111", "222222222222222", "333333333333333"
TOKEN_A, TOKEN_B, ENV_TOKEN = "EAAtokenOfPageAaaaa", "EAAtokenOfPageBbbbb", "EAAenvironmentToken"


def page_body(*, page_id: str, psid: str, mid: str, text: str = "hello") -> dict:
    """A text message to ``page_id`` from ``psid`` (the entry id and recipient name the page)."""
    body = text_body(text, mid=mid, psid=psid)
    body["entry"][0]["id"] = page_id
    body["entry"][0]["messaging"][0]["recipient"]["id"] = page_id
    return body


def authorizations(mock) -> dict[str, set[str]]:
    """For each recipient PSID, the Authorization headers its Send API calls carried."""
    import json

    seen: dict[str, set[str]] = {}
    for call in mock.calls:
        if call.request.url.startswith(GRAPH):
            psid = json.loads(call.request.body)["recipient"]["id"]
            seen.setdefault(psid, set()).add(call.request.headers["Authorization"])
    return seen


# --- end to end -------------------------------------------------------------------------------
def test_two_pages_each_user_answered_with_its_own_token(post_webhook, graph, caplog):
    """Users of two pages are answered, each through the Send API with their page's token, never logged."""
    caplog.set_level(logging.DEBUG)
    page_add(page_id=PAGE_A, name="Shop A", token=TOKEN_A)
    page_add(page_id=PAGE_B, name="Shop B", token=TOKEN_B)
    post_webhook(page_body(page_id=PAGE_A, psid="9000000000000001", mid="m_a"))
    post_webhook(page_body(page_id=PAGE_B, psid="9000000000000002", mid="m_b"))
    run_worker()

    assert set(InboundMessage.objects.values_list("status", flat=True)) == {"answered"}
    assert authorizations(graph) == {
        "9000000000000001": {f"Bearer {TOKEN_A}"},
        "9000000000000002": {f"Bearer {TOKEN_B}"},
    }
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert TOKEN_A not in logged and TOKEN_B not in logged


@override_settings(MESSENGER_PAGE_ACCESS_TOKEN=ENV_TOKEN, MESSENGER_PAGE_ID=PAGE_A)
def test_unknown_page_event_is_kept_and_not_answered(post_webhook, graph):
    """An event for a page no token serves is kept as unknown_page, with a reason, and nothing is sent."""
    post_webhook(page_body(page_id=PAGE_C, psid="9000000000000003", mid="m_c"))
    run_worker()

    row = InboundMessage.objects.get()
    assert row.status == InboundMessage.Status.UNKNOWN_PAGE
    assert PAGE_C in row.status_reason and row.finished_at is not None
    assert len(graph.calls) == 0  # not even a sender action


@override_settings(MESSENGER_PAGE_ACCESS_TOKEN=ENV_TOKEN, MESSENGER_PAGE_ID="")
def test_env_setup_without_page_rows_still_answers(post_webhook, graph):
    """The one-page setup (no Page rows, no MESSENGER_PAGE_ID) answers with the environment token."""
    post_webhook(page_body(page_id=PAGE_C, psid="9000000000000004", mid="m_env"))
    run_worker()

    assert InboundMessage.objects.get().status == InboundMessage.Status.ANSWERED
    assert authorizations(graph) == {"9000000000000004": {f"Bearer {ENV_TOKEN}"}}


# --- precedence -------------------------------------------------------------------------------
@override_settings(MESSENGER_PAGE_ACCESS_TOKEN=ENV_TOKEN, MESSENGER_PAGE_ID=PAGE_A)
def test_page_token_database_page_takes_precedence_over_env():
    """A page added with messenger_page wins over MESSENGER_PAGE_ACCESS_TOKEN for the same page."""
    assert page_token(page_id=PAGE_A) == ENV_TOKEN
    page_add(page_id=PAGE_A, name="A", token=TOKEN_A)
    assert page_token(page_id=PAGE_A) == TOKEN_A
    assert [page.source for page in pages_configured()] == ["database"]


@override_settings(MESSENGER_PAGE_ACCESS_TOKEN=ENV_TOKEN, MESSENGER_PAGE_ID="")
def test_page_token_env_without_page_id_serves_pages_the_database_does_not_name():
    page_add(page_id=PAGE_A, name="A", token=TOKEN_A)
    assert page_token(page_id=PAGE_A) == TOKEN_A
    assert page_token(page_id=PAGE_B) == ENV_TOKEN


@override_settings(MESSENGER_PAGE_ACCESS_TOKEN=ENV_TOKEN, MESSENGER_PAGE_ID=PAGE_A)
def test_page_token_env_with_page_id_serves_only_that_page():
    assert page_token(page_id=PAGE_A) == ENV_TOKEN
    assert page_token(page_id=PAGE_B) == ""
    assert not page_served(page_id=PAGE_B)


@override_settings(MESSENGER_PAGE_ACCESS_TOKEN=ENV_TOKEN, MESSENGER_PAGE_ID="")
def test_page_inactive_is_not_served_even_by_the_env_token():
    page_add(page_id=PAGE_A, name="A", token=TOKEN_A)
    Page.objects.filter(id=PAGE_A).update(active=False)
    pages_cache_clear()
    assert page_token(page_id=PAGE_A) == ""
    assert not page_served(page_id=PAGE_A)


@override_settings(MESSENGER_PAGE_ACCESS_TOKEN="")
def test_pages_dry_run_serves_every_page_when_none_is_configured():
    assert pages_dry_run() and page_served(page_id=PAGE_C)
    page_add(page_id=PAGE_A, name="A", token=TOKEN_A)
    assert not pages_dry_run() and not page_served(page_id=PAGE_C)


# --- writes -----------------------------------------------------------------------------------
def test_page_add_replaces_the_token_of_an_existing_page():
    _, created = page_add(page_id=PAGE_A, name="A", token=TOKEN_A)
    _, created_again = page_add(page_id=PAGE_A, name="", token=TOKEN_B)
    assert created and not created_again
    row = Page.objects.get()
    assert row.name == "A" and token_decrypt(ciphertext=row.token_encrypted) == TOKEN_B
    assert page_token(page_id=PAGE_A) == TOKEN_B


def test_page_add_stores_only_ciphertext():
    page_add(page_id=PAGE_A, name="A", token=TOKEN_A)
    stored = Page.objects.values_list("token_encrypted", flat=True).get()
    assert TOKEN_A not in stored
    assert TOKEN_A not in repr(Page.objects.get()) and TOKEN_A not in repr(pages_configured())


def test_page_add_refuses_an_empty_token():
    with pytest.raises(ValueError):
        page_add(page_id=PAGE_A, name="A", token="  ")
    assert not Page.objects.exists()


def test_page_remove_stops_serving_the_page():
    page_add(page_id=PAGE_A, name="A", token=TOKEN_A)
    assert page_remove(page_id=PAGE_A) and not page_remove(page_id=PAGE_A)
    assert page_token(page_id=PAGE_A) == ""


def test_pages_rotate_reencrypts_under_the_first_key():
    """Old ciphertext decrypts with the new key in front; after rotate the old key can be removed."""
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(MESSENGER_TOKEN_KEYS=[old]):
        page_add(page_id=PAGE_A, name="A", token=TOKEN_A)
    before = Page.objects.get().token_encrypted
    with override_settings(MESSENGER_TOKEN_KEYS=[new, old]):
        pages_cache_clear()
        assert page_token(page_id=PAGE_A) == TOKEN_A  # before rotation: the old key still decrypts
        assert pages_rotate() == 1
    with override_settings(MESSENGER_TOKEN_KEYS=[new]):
        pages_cache_clear()
        assert Page.objects.get().token_encrypted != before
        assert page_token(page_id=PAGE_A) == TOKEN_A


def test_pages_unreadable_token_is_logged_and_not_served(caplog):
    """A token no configured key decrypts (its key removed before rotate): ERROR, the page not served."""
    from cryptography.fernet import Fernet

    with override_settings(MESSENGER_TOKEN_KEYS=[Fernet.generate_key().decode()]):
        page_add(page_id=PAGE_A, name="A", token=TOKEN_A)
    pages_cache_clear()
    assert page_token(page_id=PAGE_A) == ""
    assert "messenger.pages.token-unreadable" in [record.getMessage() for record in caplog.records]


@override_settings(MESSENGER_PAGE_ACCESS_TOKEN=ENV_TOKEN)
def test_pages_tokens_in_memory_lists_read_tokens_for_the_scrubber():
    """Sentry's scrubber gets every token this process holds, the database's once read, without a query."""
    from chatbot.sentry import page_tokens

    page_add(page_id=PAGE_A, name="A", token=TOKEN_A)
    page_token(page_id=PAGE_A)  # the table is read
    assert set(page_tokens()) == {TOKEN_A, ENV_TOKEN}
