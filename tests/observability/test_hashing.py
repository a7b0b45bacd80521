"""Tests for observability/hashing.py: a keyed, stable, non-reversible PSID hash."""

from __future__ import annotations

import hashlib
import hmac

from django.test import override_settings

from observability.hashing import hash_psid


@override_settings(OBSERVABILITY_PSID_HASH_KEY="k1")
def test_hash_psid_is_hmac_sha256_under_the_key():
    """The hash is the HMAC-SHA256 of the PSID under the configured key, first 32 hex digits."""
    expected = hmac.new(b"k1", b"123", hashlib.sha256).hexdigest()[:32]

    assert hash_psid("123") == expected
    assert hash_psid("123") == hash_psid("123")


def test_hash_psid_changes_with_the_key():
    """Another key gives another hash, so the hash can't be recomputed without the key."""
    with override_settings(OBSERVABILITY_PSID_HASH_KEY="k1"):
        first = hash_psid("123")
    with override_settings(OBSERVABILITY_PSID_HASH_KEY="k2"):
        second = hash_psid("123")

    assert first != second


def test_hash_psid_of_nothing_is_empty():
    """A missing or empty PSID hashes to the empty string."""
    assert hash_psid(None) == ""
    assert hash_psid("") == ""
