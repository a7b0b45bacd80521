"""Test-session defaults: real PostgreSQL and a dedicated Redis database, never SQLite or fakes.

These defaults apply before Django reads its settings; a value already in the environment wins.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://root@127.0.0.1:5432/chatbot")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("MESSENGER_APP_SECRET", "test-app-secret")
os.environ.setdefault("MESSENGER_VERIFY_TOKEN", "test-verify-token")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-for-the-test-suite-only")
