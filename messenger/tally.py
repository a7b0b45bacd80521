"""Counts of rows per kind, as the forget and prune commands print and log them.

:class:`messenger.forget.ForgetResult` and :class:`messenger.retention.PruneResult` declare their
kinds; this base gives both the same ``as_dict`` (in declaration order) and sum.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Tally:
    """Counts per kind of row, in the order the commands print and log them (``as_dict``); two add up."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def __add__(self, other: Tally) -> Tally:
        mine, theirs = self.as_dict(), other.as_dict()
        return type(self)(**{kind: mine[kind] + theirs[kind] for kind in mine})
