"""Tests for messenger/token_crypto.py: Fernet under a list of keys, rotation, refusing production without keys."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.test import override_settings

from messenger.token_crypto import (
    TokenKeysMissing,
    TokenUnreadable,
    token_decrypt,
    token_encrypt,
    token_keys,
    token_reencrypt,
)

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
TOKEN = "EAAsecretpagetokenXYZ"


@override_settings(MESSENGER_TOKEN_KEYS=[OLD_KEY])
def test_token_encrypt_round_trips_and_hides_the_token():
    """The ciphertext is not the token, nor holds it; decrypting gives it back."""
    ciphertext = token_encrypt(token=TOKEN)
    assert TOKEN not in ciphertext
    assert token_decrypt(ciphertext=ciphertext) == TOKEN


def test_token_rotation_old_ciphertext_decrypts_until_reencrypted():
    """A key in front encrypts; the old one still decrypts; re-encrypted, the old key can go."""
    with override_settings(MESSENGER_TOKEN_KEYS=[OLD_KEY]):
        old_ciphertext = token_encrypt(token=TOKEN)
    with override_settings(MESSENGER_TOKEN_KEYS=[NEW_KEY, OLD_KEY]):
        assert token_decrypt(ciphertext=old_ciphertext) == TOKEN
        rotated = token_reencrypt(ciphertext=old_ciphertext)
    with override_settings(MESSENGER_TOKEN_KEYS=[NEW_KEY]):
        assert token_decrypt(ciphertext=rotated) == TOKEN
        with pytest.raises(TokenUnreadable) as raised:
            token_decrypt(ciphertext=old_ciphertext)
    assert TOKEN not in str(raised.value)


@override_settings(MESSENGER_TOKEN_KEYS=[], DEBUG=False)
def test_token_keys_missing_in_production_is_refused():
    with pytest.raises(TokenKeysMissing):
        token_encrypt(token=TOKEN)


@override_settings(MESSENGER_TOKEN_KEYS=[], DEBUG=True)
def test_token_keys_derived_from_secret_key_in_development():
    assert len(token_keys()) == 1
    assert token_decrypt(ciphertext=token_encrypt(token=TOKEN)) == TOKEN


@override_settings(MESSENGER_TOKEN_KEYS=["not-a-fernet-key"])
def test_token_keys_invalid_key_is_refused_without_quoting_it():
    with pytest.raises(TokenKeysMissing) as raised:
        token_encrypt(token=TOKEN)
    assert "not-a-fernet-key" not in str(raised.value)


@override_settings(MESSENGER_TOKEN_KEYS=f"{NEW_KEY},{OLD_KEY}")
def test_token_keys_accept_a_comma_separated_string():
    assert token_keys() == [NEW_KEY.encode(), OLD_KEY.encode()]
