"""What several messenger test modules share."""

from __future__ import annotations


def sentences(count: int, *, words: int = 12) -> str:
    """``count`` distinct numbered sentences of ``words`` words each, separated by spaces."""
    return " ".join(f"Sentence {i} " + " ".join(["word"] * (words - 2)) + "." for i in range(count))
