"""Tests for observability/admin.py: read-only event list for staff, filterable and searchable."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from observability.hashing import hash_psid
from observability.models import Event
from tests.observability.helpers import RAW_PSID, make_event

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:observability_event_changelist")


@pytest.fixture
def staff_client(client):
    user = User.objects.create_user("ops", password="pw-ops-123", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_event"))
    client.force_login(user)
    return client


@pytest.fixture
def events():
    return [
        make_event(Event.Type.MESSAGE_RECEIVED, psid_hash=hash_psid(RAW_PSID), mid="m_alpha"),
        make_event(Event.Type.SEND_FAILED, psid_hash=hash_psid("other-user"), mid="m_beta"),
    ]


def test_event_changelist_renders_for_staff_with_filters(staff_client, events):
    """Staff see the list with type and fixed "when" filters (no DISTINCT), and filtering narrows it."""
    response = staff_client.get(CHANGELIST)
    assert response.status_code == 200
    specs = {getattr(spec, "field_path", None) or spec.parameter_name for spec in response.context["cl"].filter_specs}
    assert specs == {"event_type", "recent"}
    body = response.content.decode()
    for parameter in ("event_type__exact=", "recent=hour"):
        assert parameter in body
    assert staff_client.get(CHANGELIST, {"recent": "hour"}).context["cl"].result_count == 2

    filtered = staff_client.get(CHANGELIST, {"event_type__exact": "send_failed"})
    assert [e.mid for e in filtered.context["cl"].result_list] == ["m_beta"]


@pytest.mark.parametrize("term", [hash_psid(RAW_PSID), RAW_PSID, "m_alpha"])
def test_event_changelist_search_by_hash_raw_psid_or_mid_finds_the_event(staff_client, events, term):
    """A hashed PSID, the raw PSID (hashed before the search) or a mid finds that user's event."""
    response = staff_client.get(CHANGELIST, {"q": term})

    assert response.status_code == 200
    assert [e.mid for e in response.context["cl"].result_list] == ["m_alpha"]


def test_event_changelist_redirects_non_staff_to_login(client, events):
    """A logged-in user who is not staff is sent to the admin login page."""
    client.force_login(User.objects.create_user("visitor", password="pw-visitor-123"))

    response = client.get(CHANGELIST)

    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


def test_event_admin_refuses_add_and_change(admin_client, events):
    """Even a superuser can't add or edit an event: the record is read-only."""
    add = admin_client.get(reverse("admin:observability_event_add"))
    change = admin_client.post(
        reverse("admin:observability_event_change", args=[events[0].pk]), {"mid": "edited"}
    )

    assert add.status_code == 403
    assert change.status_code == 403
    events[0].refresh_from_db()
    assert events[0].mid == "m_alpha"


def test_event_admin_delete_refused_to_everyone(admin_client, staff_client, events):
    """Nobody deletes an event in the admin, not even a superuser: erasing is messenger_forget's job."""
    url = reverse("admin:observability_event_delete", args=[events[0].pk])

    assert staff_client.post(url, {"post": "yes"}).status_code == 403
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert Event.objects.filter(pk=events[0].pk).exists()
