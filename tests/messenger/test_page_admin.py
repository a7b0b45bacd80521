"""Tests for messenger/page_admin.py: the Page admin shows a "token set" flag, never the token."""

from __future__ import annotations

import pytest
from django.urls import reverse

from messenger.models import Page
from messenger.pages import page_add, page_token

pytestmark = pytest.mark.django_db

PAGE = "555555555555555"
TOKEN, NEW_TOKEN = "EAAadminSecretPageToken", "EAAadminReplacementTok"


def test_page_admin_changelist_and_change_page_never_show_the_token(admin_client):
    page_add(page_id=PAGE, name="Shop", token=TOKEN)
    ciphertext = Page.objects.get().token_encrypted
    for url in (
        reverse("admin:messenger_page_changelist"),
        reverse("admin:messenger_page_change", args=[PAGE]),
    ):
        html = admin_client.get(url).content.decode()
        assert PAGE in html and "Shop" in html
        assert TOKEN not in html and ciphertext not in html


def test_page_admin_empty_token_field_keeps_the_stored_token(admin_client):
    page_add(page_id=PAGE, name="Shop", token=TOKEN)
    url = reverse("admin:messenger_page_change", args=[PAGE])
    response = admin_client.post(url, {"name": "Shop renamed", "active": "on", "token": ""})
    assert response.status_code == 302
    assert Page.objects.get().name == "Shop renamed" and page_token(page_id=PAGE) == TOKEN


def test_page_admin_write_only_field_replaces_the_token(admin_client):
    page_add(page_id=PAGE, name="Shop", token=TOKEN)
    url = reverse("admin:messenger_page_change", args=[PAGE])
    response = admin_client.post(url, {"name": "Shop", "active": "on", "token": NEW_TOKEN})
    assert response.status_code == 302
    assert page_token(page_id=PAGE) == NEW_TOKEN
    assert NEW_TOKEN not in admin_client.get(url).content.decode()


def test_page_admin_add_needs_a_token(admin_client):
    url = reverse("admin:messenger_page_add")
    refused = admin_client.post(url, {"id": PAGE, "name": "Shop", "active": "on", "token": ""})
    assert refused.status_code == 200 and not Page.objects.exists()
    added = admin_client.post(url, {"id": PAGE, "name": "Shop", "active": "on", "token": TOKEN})
    assert added.status_code == 302 and page_token(page_id=PAGE) == TOKEN
