"""Keyed hashing of Facebook PSIDs, so events and logs can follow one user without naming them."""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from django.conf import settings


@lru_cache(maxsize=4)
def _key(raw: str) -> bytes:
    return raw.encode("utf-8")


def hash_psid(psid: str | None) -> str:
    """Return the HMAC-SHA256 of ``psid`` under ``OBSERVABILITY_PSID_HASH_KEY``, hex, 16 bytes.

    Stable for a given key (the same user always hashes the same way) and not reversible without
    the key. An empty or missing PSID hashes to ``""`` so callers never have to special-case it.
    """
    if not psid:
        return ""
    digest = hmac.new(_key(settings.OBSERVABILITY_PSID_HASH_KEY), psid.encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:32]
