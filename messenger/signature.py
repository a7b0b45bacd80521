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


def _hexdigest(body: bytes, secret: str) -> str:
    """The one HMAC definition: hex HMAC-SHA256 of the raw ``body`` under the app ``secret``."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def compute_signature(*, body: bytes, secret: str) -> str:
    """The header value Facebook sends for ``body``.

    The signer of ``messenger_simulate``, the test suite and the benches (``harness.webhooks.sign``),
    so what they send is checked by the very formula :func:`check_signature` applies.
    """
    return _PREFIX + _hexdigest(body, secret)


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
    expected = _hexdigest(body, secret)
    if not hmac.compare_digest(header[len(_PREFIX) :].lower().encode("ascii", "replace"), expected.encode()):
        return SignatureProblem.MISMATCH
    return None
