"""Facebook's webhook signature: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``.

The signature is checked over the raw request bytes (never re-serialised JSON) with the app
secret, in constant time, before anything in the body is parsed.
See https://developers.facebook.com/docs/messenger-platform/webhooks#validate-payloads
"""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum

SIGNATURE_HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="


class SignatureProblem(StrEnum):
    """Why a signature was refused; logged as is, never with the header's value or the secret."""

    NO_SECRET = "no-app-secret-configured"
    MISSING = "missing"
    MALFORMED = "malformed"
    MISMATCH = "mismatch"


def compute_signature(*, body: bytes, secret: str) -> str:
    """The header value Facebook sends for ``body`` (used by messenger_simulate and tests)."""
    return _PREFIX + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def check_signature(*, body: bytes, header: str | None, secret: str) -> SignatureProblem | None:
    """``None`` when ``header`` is the right signature of ``body``; otherwise what is wrong with it.

    With no app secret configured every call is refused: an unset secret must never mean "accept all".
    """
    if not secret:
        return SignatureProblem.NO_SECRET
    if not header:
        return SignatureProblem.MISSING
    if not header.startswith(_PREFIX) or len(header) != len(_PREFIX) + 64:
        return SignatureProblem.MALFORMED
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(header[len(_PREFIX) :].lower().encode("ascii", "replace"), expected.encode()):
        return SignatureProblem.MISMATCH
    return None
