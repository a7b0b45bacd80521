"""Tests for ``manage.py messenger_page``: the token read from standard input, never printed."""

from __future__ import annotations

import io
import logging

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from messenger.models import Page
from messenger.pages import page_token

pytestmark = pytest.mark.django_db

PAGE = "444444444444444"
TOKEN, NEW_TOKEN = "EAAcommandLineSecretToken", "EAAreplacementSecretToken"


def run(*args: str, stdin: str | None = None) -> str:
    out, err = io.StringIO(), io.StringIO()
    options = {"stdin": io.StringIO(stdin)} if stdin is not None else {}
    call_command("messenger_page", *args, stdout=out, stderr=err, **options)
    return out.getvalue() + err.getvalue()


def test_messenger_page_add_reads_the_token_from_stdin_and_never_prints_it(caplog):
    caplog.set_level(logging.DEBUG)
    output = run("add", PAGE, "--name", "Shop", stdin=f"{TOKEN}\n")
    assert f"Added page {PAGE}" in output and TOKEN not in output
    assert all(TOKEN not in f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert page_token(page_id=PAGE) == TOKEN


def test_messenger_page_add_replaces_the_token_of_an_existing_page():
    run("add", PAGE, "--name", "Shop", stdin=f"{TOKEN}\n")
    output = run("add", PAGE, stdin=f"{NEW_TOKEN}\n")
    assert "Replaced the token" in output and NEW_TOKEN not in output and TOKEN not in output
    assert Page.objects.count() == 1 and page_token(page_id=PAGE) == NEW_TOKEN


def test_messenger_page_add_refuses_an_empty_token():
    with pytest.raises(CommandError, match="No token"):
        run("add", PAGE, stdin="\n")
    assert not Page.objects.exists()


@override_settings(MESSENGER_PAGE_ACCESS_TOKEN="EAAenvironmentToken", MESSENGER_PAGE_ID="")
def test_messenger_page_list_shows_pages_and_sources_never_a_token():
    run("add", PAGE, "--name", "Shop", stdin=f"{TOKEN}\n")
    output = run("list")
    assert PAGE in output and "Shop" in output and "database" in output and "MESSENGER_PAGE_ACCESS_TOKEN" in output
    assert TOKEN not in output and "EAAenvironmentToken" not in output
    assert Page.objects.get().token_encrypted not in output


def test_messenger_page_remove_deletes_and_refuses_an_unknown_page():
    run("add", PAGE, stdin=f"{TOKEN}\n")
    assert f"Removed page {PAGE}" in run("remove", PAGE)
    with pytest.raises(CommandError):
        run("remove", PAGE)


def test_messenger_page_rotate_reencrypts_every_token():
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(MESSENGER_TOKEN_KEYS=[old]):
        run("add", PAGE, stdin=f"{TOKEN}\n")
    with override_settings(MESSENGER_TOKEN_KEYS=[new, old]):
        assert "Re-encrypted 1 page token" in run("rotate")
    with override_settings(MESSENGER_TOKEN_KEYS=[new]):
        from messenger.pages import pages_cache_clear

        pages_cache_clear()
        assert page_token(page_id=PAGE) == TOKEN


@override_settings(MESSENGER_TOKEN_KEYS=[], DEBUG=False)
def test_messenger_page_add_without_keys_in_production_says_what_to_set():
    with pytest.raises(CommandError, match="MESSENGER_TOKEN_KEYS"):
        run("add", PAGE, stdin=f"{TOKEN}\n")
