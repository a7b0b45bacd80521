"""Tests for messenger/signature.py: Facebook's ``X-Hub-Signature-256`` over the raw body.

First the functions themselves (the header value, and why a header is refused), then the webhook:
the signature is the first thing checked, and a refused body is neither kept nor queued.
"""

from __future__ import annotations

import hmac

import pytest
from django.test import Client, override_settings

from messenger import signature
from messenger.models import InboundMessage
from messenger.queues import get_queue
from messenger.signature import SIGNATURE_HEADER, SignatureProblem, check_signature, compute_signature
from tests.conftest import fixture_bytes, load_fixture, sign

URL = "/messenger/v2/webhook"
SECRET = "test-app-secret"
BODY = b'{"object": "page", "entry": []}'


# --- the functions ---------------------------------------------------------------------------------


def test_compute_signature_reproduces_facebooks_real_header():
    """messenger4j's real signed body: our header value is Facebook's, byte for byte."""
    sample = load_fixture("signed_text_message")
    header = compute_signature(body=sample["raw_body"].encode(), secret=sample["app_secret"])
    assert header == sample["x_hub_signature_256"]


def test_check_signature_accepts_the_right_header():
    """The header computed over the very bytes with the very secret passes."""
    assert check_signature(body=BODY, header=compute_signature(body=BODY, secret=SECRET), secret=SECRET) is None


def test_check_signature_accepts_uppercase_hex():
    """Hex digits are compared case-insensitively (the header's case is not part of the signature)."""
    header = "sha256=" + compute_signature(body=BODY, secret=SECRET).removeprefix("sha256=").upper()
    assert check_signature(body=BODY, header=header, secret=SECRET) is None


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (None, SignatureProblem.MISSING),
        ("", SignatureProblem.MISSING),
        ("sha256=", SignatureProblem.MALFORMED),
        ("sha256=abc", SignatureProblem.MALFORMED),
        ("sha1=3daa41999293ff66c3eb313e04bcf77861bb0276", SignatureProblem.MALFORMED),
        ("garbage", SignatureProblem.MALFORMED),
        ("sha256=" + "0" * 65, SignatureProblem.MALFORMED),
        ("sha256=" + "0" * 64, SignatureProblem.MISMATCH),
        ("sha256=" + "\u00e9" * 64, SignatureProblem.MISMATCH),  # not ASCII: refused, never an exception
    ],
)
def test_check_signature_names_what_is_wrong_with_a_header(header, problem):
    """Missing, malformed (wrong prefix or length) and wrong headers are told apart, for the log."""
    assert check_signature(body=BODY, header=header, secret=SECRET) == problem


def test_check_signature_refuses_a_signature_of_another_body():
    """A right signature of one body does not vouch for another (a replayed header)."""
    header = compute_signature(body=BODY, secret=SECRET)
    assert check_signature(body=BODY + b" ", header=header, secret=SECRET) == SignatureProblem.MISMATCH


def test_check_signature_refuses_another_secret():
    """A body signed with a different app secret is refused."""
    header = compute_signature(body=BODY, secret="not-our-secret")
    assert check_signature(body=BODY, header=header, secret=SECRET) == SignatureProblem.MISMATCH


def test_check_signature_without_secret_refuses_everything():
    """An unset app secret never means "accept all", not even for a header signed with the empty secret."""
    header = compute_signature(body=BODY, secret="")
    assert check_signature(body=BODY, header=header, secret="") == SignatureProblem.NO_SECRET


def test_check_signature_compares_in_constant_time(monkeypatch):
    """The digest is compared with hmac.compare_digest, never ``==`` (no timing oracle on the secret)."""
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signature.hmac, "compare_digest", spy)
    assert check_signature(body=BODY, header=compute_signature(body=BODY, secret=SECRET), secret=SECRET) is None
    assert check_signature(body=BODY, header="sha256=" + "0" * 64, secret=SECRET) == SignatureProblem.MISMATCH
    assert len(calls) == 2


def test_signature_header_is_facebooks():
    """The header the view reads and the signers write is Facebook's SHA-256 one."""
    assert SIGNATURE_HEADER == "X-Hub-Signature-256"
    assert sign(BODY, SECRET) == compute_signature(body=BODY, secret=SECRET)


# --- through the webhook: the check comes first, and a refusal keeps nothing ---------------------


@pytest.mark.django_db
def test_real_facebook_signature_is_accepted(client):
    """messenger4j's real signed body verifies byte for byte with its app secret."""
    sample = load_fixture("signed_text_message")
    with override_settings(MESSENGER_APP_SECRET=sample["app_secret"]):
        response = client.post(URL, data=sample["raw_body"].encode(), content_type="application/json",
                               HTTP_X_HUB_SIGNATURE_256=sample["x_hub_signature_256"])
    assert response.status_code == 200
    assert InboundMessage.objects.get().mid == "mid.1475942721728:3b9e3646712f9bed52"


@pytest.mark.django_db
def test_signature_of_another_body_is_refused_and_stores_nothing(client):
    """The real signature replayed over a tampered body is refused, and nothing is kept or queued."""
    sample = load_fixture("signed_text_message")
    with override_settings(MESSENGER_APP_SECRET=sample["app_secret"]):
        response = client.post(URL, data=sample["tampered_raw_body"].encode(),
                               content_type="application/json",
                               HTTP_X_HUB_SIGNATURE_256=sample["x_hub_signature_256"])
    assert response.status_code == 403
    assert InboundMessage.objects.count() == 0
    assert get_queue("messenger_fast").get_job_ids() == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "sha1=3daa41999293ff66c3eb313e04bcf77861bb0276", "sha256=" + "0" * 64, "garbage"],
)
def test_missing_or_wrong_signature_is_refused_and_stores_nothing(post_webhook, header):
    """No header, an empty one, a SHA-1 one, a wrong digest or junk: 403, no row, no job."""
    body = fixture_bytes("text_message")
    if header is None:
        response = Client().post(URL, data=body, content_type="application/json")
    else:
        response = post_webhook(body, signature=header)
    assert response.status_code == 403
    assert InboundMessage.objects.count() == 0
    assert get_queue("messenger_fast").get_job_ids() == []


@pytest.mark.django_db
def test_signature_with_another_secret_is_refused(post_webhook):
    """A body signed with a different app secret is refused."""
    body = fixture_bytes("text_message")
    assert post_webhook(body, signature=sign(body, "not-our-secret")).status_code == 403
    assert InboundMessage.objects.count() == 0


@pytest.mark.django_db
@override_settings(MESSENGER_APP_SECRET="")
def test_unset_app_secret_refuses_every_post(post_webhook):
    """Without an app secret no signature can be right: every POST is refused, never accepted."""
    body = fixture_bytes("text_message")
    assert post_webhook(body, signature=sign(body, "")).status_code == 403
    assert InboundMessage.objects.count() == 0
