"""Settings for the test suite: the project's settings, with test defaults for the environment.

Tests run against real PostgreSQL and a dedicated Redis database (15), never SQLite or fakes. A value
already in the environment wins (CI and parallel runs set DATABASE_URL, DATABASE_TEST_NAME, REDIS_URL).
Subprocesses the tests start (rqworker) inherit these variables.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://root@127.0.0.1:5432/chatbot")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("MESSENGER_APP_SECRET", "test-app-secret")
os.environ.setdefault("MESSENGER_VERIFY_TOKEN", "test-verify-token")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-for-the-test-suite-only")
os.environ.setdefault("MESSENGER_PAGE_ACCESS_TOKEN", "")
os.environ.setdefault("CHATBOT_ENGINE", "rules")
# A fixed Fernet key for page tokens (pytest-django runs with DEBUG off, so no dev key is derived).
os.environ.setdefault("MESSENGER_TOKEN_KEYS", "Bl6QUaQjYg9AbJC_pfwHrIfaQi5qOfJWu4c9roSqIBc=")
# Forced, not defaulted: a developer's own SENTRY_DSN must never receive the test suite's errors.
os.environ["SENTRY_DSN"] = ""

from chatbot.settings import *  # noqa: F403
