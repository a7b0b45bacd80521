"""What the engine's tests share: the shipped rules file, a context builder, a minimal valid file."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings

from engine.types import ChatContext

SHIPPED = Path(settings.BASE_DIR) / "engine" / "rules.json"


def ctx(text: str = "", *, payload: str = "", history=(), new: bool = False) -> ChatContext:
    return ChatContext(
        psid_hash="abc123",
        conversation_id=7,
        text=text,
        payload=payload,
        history=tuple(history),
        is_new_conversation=new,
    )


def minimal_rules(**overrides) -> dict:
    data = {
        "version": 1,
        "intents": [{"name": "greeting", "patterns": ["hello"], "answers": ["Hello!"]}],
        "payloads": {},
        "fallback": {"answers": ["Sorry?"]},
    }
    data.update(overrides)
    return data


def write(path: Path, data: dict | str) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path
