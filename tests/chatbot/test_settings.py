"""Settings read from the environment: production refuses to start without its secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_check(**env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MESSENGER_"))}
    base.update(DJANGO_SETTINGS_MODULE="chatbot.settings", DATABASE_URL="sqlite:///:memory:", **env)
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=base, capture_output=True, text=True, timeout=60
    )


def test_production_refuses_the_development_secret_key():
    """DJANGO_DEBUG=false without DJANGO_SECRET_KEY stops start-up with a message naming the variable."""
    result = run_check(DJANGO_DEBUG="false", MESSENGER_APP_SECRET="x")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_production_refuses_a_missing_app_secret():
    """DJANGO_DEBUG=false without MESSENGER_APP_SECRET stops start-up with a message naming it."""
    result = run_check(DJANGO_DEBUG="false", DJANGO_SECRET_KEY="k" * 50)
    assert result.returncode != 0
    assert "MESSENGER_APP_SECRET is not set" in result.stderr


def test_production_starts_with_its_secrets():
    """With both secrets set, production settings load and Django's checks pass."""
    result = run_check(DJANGO_DEBUG="false", DJANGO_SECRET_KEY="k" * 50, MESSENGER_APP_SECRET="s")
    assert result.returncode == 0, result.stderr
