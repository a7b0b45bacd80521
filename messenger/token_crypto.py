"""Page tokens encrypted at rest: Fernet (``cryptography``) under a list of keys, for rotation.

Why Fernet: it is authenticated encryption (AES-128-CBC + HMAC-SHA256, a random IV per token) behind
a two-call API, from ``cryptography``, the maintained library that Django, requests' TLS stack and
most of the Python ecosystem already trust; nothing here is hand-rolled. ``MultiFernet`` gives key
rotation: the first key encrypts, every key decrypts, and ``rotate`` re-encrypts a token under the
first key (``manage.py messenger_page rotate``; ``docs/pages.md``).

Keys: ``MESSENGER_TOKEN_KEYS``, a comma-separated list of Fernet keys (32 url-safe base64 bytes each,
``Fernet.generate_key()``). Unset, a development deployment (``DJANGO_DEBUG`` true) derives one key
from ``SECRET_KEY``, so a fresh clone works; production refuses to encrypt or decrypt without the
setting (:class:`TokenKeysMissing`, a clear message) instead of silently tying every stored token
to ``SECRET_KEY``. It is checked when a page token is first needed, not at start-up: a one-page
setup on ``MESSENGER_PAGE_ACCESS_TOKEN`` stores nothing and needs no key.

Nothing here logs, and no exception text holds a token or a key.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class TokenKeysMissing(ImproperlyConfigured):
    """Production without ``MESSENGER_TOKEN_KEYS``, or a key that is not a Fernet key."""


class TokenUnreadable(Exception):
    """A stored token no configured key decrypts (its key was removed before ``rotate`` ran)."""


def _dev_key() -> bytes:
    digest = hashlib.sha256(("messenger-page-token:" + settings.SECRET_KEY).encode()).digest()
    return base64.urlsafe_b64encode(digest)


def token_keys() -> list[bytes]:
    """The configured keys, first (encrypting) key first; the derived dev key under ``DEBUG``."""
    raw = getattr(settings, "MESSENGER_TOKEN_KEYS", []) or []
    if isinstance(raw, str):
        raw = raw.split(",")
    keys = [key.strip().encode() for key in raw if key and key.strip()]
    if keys:
        return keys
    if settings.DEBUG:
        return [_dev_key()]
    raise TokenKeysMissing(
        "MESSENGER_TOKEN_KEYS is not set: production (DJANGO_DEBUG=false) does not store page tokens "
        "without it. Generate a key with `python -c \"from cryptography.fernet import Fernet; "
        "print(Fernet.generate_key().decode())\"` and see docs/pages.md."
    )


def _fernet() -> MultiFernet:
    try:
        return MultiFernet([Fernet(key) for key in token_keys()])
    except ValueError:
        # Fernet's own text never quotes the key; ours does not either.
        raise TokenKeysMissing("MESSENGER_TOKEN_KEYS holds a value that is not a Fernet key") from None


def token_encrypt(*, token: str) -> str:
    """``token`` encrypted under the first key (ASCII text, safe for a ``TextField``)."""
    return _fernet().encrypt(token.encode()).decode()


def token_decrypt(*, ciphertext: str) -> str:
    """The token ``ciphertext`` holds, under any configured key; raises :class:`TokenUnreadable`."""
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise TokenUnreadable("no key in MESSENGER_TOKEN_KEYS decrypts this page's token") from None


def token_reencrypt(*, ciphertext: str) -> str:
    """``ciphertext`` re-encrypted under the first key (``MultiFernet.rotate``); raises :class:`TokenUnreadable`."""
    try:
        return _fernet().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise TokenUnreadable("no key in MESSENGER_TOKEN_KEYS decrypts this page's token") from None
