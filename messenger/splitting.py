"""Cutting text to a length without tearing what a reader sees as one character.

:func:`split_text` cuts a long text into messages of at most 2,000 characters
(:data:`messenger.limits.MAX_TEXT_CHARS`), preferring sentence ends, then spaces, then any
grapheme-cluster boundary (the ``regex`` module's ``\\X``, which knows Unicode's segmentation
rules): a flag, a family emoji joined by ZWJ or a letter with its combining accents is never torn
apart. :func:`shorten` fits a title or label within its limit the same way. Characters are counted as
code points (see ``messenger/limits.py`` for why).
"""

from __future__ import annotations

import bisect

import regex

from messenger import texts
from messenger.limits import MAX_TEXT_CHARS

# Our own cap, not Facebook's: past this many messages a reply is cut and ends with an ellipsis.
MAX_PARTS = 5

ELLIPSIS = texts.TRUNCATION_ELLIPSIS

# Characters that end a sentence (with the ellipsis, the CJK full stop, fullwidth ! and ?, and the
# double marks), and closing marks that may follow them ("Really?" she said.): guillemets, curly
# quotes, CJK brackets.
_TERMINATORS = frozenset(".!?\u2026\u3002\uff01\uff1f\u203c\u2047\u2048\u2049")
_CLOSERS = frozenset("\"')]}\u00bb\u201d\u2019\u203a\u300d\u300f\uff09")
# CJK sentence ends are not followed by a space, so they are boundaries on their own.
_SPACELESS_TERMINATORS = frozenset("\u3002\uff01\uff1f")  # CJK full stop, fullwidth ! and ?
_GRAPHEME = regex.compile(r"\X")


def _is_high_surrogate(ch: str) -> bool:
    return "\ud800" <= ch <= "\udbff"


def _is_low_surrogate(ch: str) -> bool:
    return "\udc00" <= ch <= "\udfff"


def _clusters(text: str) -> list[str]:
    """Grapheme clusters of ``text``; a stray high+low surrogate pair counts as one cluster.

    A Python ``str`` normally holds no surrogates, but one built from broken UTF-16 can; Unicode's
    rules break around each surrogate, and cutting between the two halves would corrupt the text.
    """
    out: list[str] = []
    for cluster in _GRAPHEME.findall(text):
        if out and _is_high_surrogate(out[-1][-1]) and _is_low_surrogate(cluster[0]):
            out[-1] += cluster
        else:
            out.append(cluster)
    return out


def _pieces(cluster: str, size: int) -> list[str]:
    """A cluster cut into pieces of at most ``size`` code points, never between surrogate halves.

    Only pathological clusters (thousands of combining marks) are longer than a message; cutting
    them is the one case where a cluster must be broken, and it is done at code points.
    """
    if len(cluster) <= size:
        return [cluster]
    out = []
    start = 0
    while start < len(cluster):
        end = min(start + size, len(cluster))
        if (
            end < len(cluster)
            and end - start > 1
            and _is_low_surrogate(cluster[end])
            and _is_high_surrogate(cluster[end - 1])
        ):
            end -= 1
        out.append(cluster[start:end])
        start = end
    return out


class _Segmented:
    """A stripped text as clusters, with cumulative code-point counts and its cut points.

    A cut point is ``(content_end, next_start)`` in cluster indices: the part before it ends at
    ``content_end`` and the next part starts at ``next_start`` (whitespace between them is dropped).
    """

    def __init__(self, text: str, max_cluster: int) -> None:
        clusters = _clusters(text)
        lo, hi = 0, len(clusters)
        while lo < hi and clusters[lo].isspace():
            lo += 1
        while hi > lo and clusters[hi - 1].isspace():
            hi -= 1
        self.clusters = [piece for cluster in clusters[lo:hi] for piece in _pieces(cluster, max_cluster)]
        self.cum = [0]
        for cluster in self.clusters:
            self.cum.append(self.cum[-1] + len(cluster))
        self.sentence_cuts: list[tuple[int, int]] = []
        self.word_cuts: list[tuple[int, int]] = []
        self._find_cuts()
        self.sentence_ends = [self.cum[end] for end, _ in self.sentence_cuts]
        self.word_ends = [self.cum[end] for end, _ in self.word_cuts]

    def _ends_sentence(self, index: int) -> bool:
        """Whether the text just before cluster ``index`` ends a sentence (closers skipped)."""
        j = index - 1
        while j >= 0 and self.clusters[j][0] in _CLOSERS:
            j -= 1
        return j >= 0 and self.clusters[j][0] in _TERMINATORS

    def _find_cuts(self) -> None:
        clusters, n = self.clusters, len(self.clusters)
        i = 0
        while i < n:
            if clusters[i].isspace():
                j = i
                while j < n and clusters[j].isspace():
                    j += 1
                cut = (i, j)
                self.word_cuts.append(cut)
                if self._ends_sentence(i) or any("\n" in c or "\u2029" in c for c in clusters[i:j]):
                    self.sentence_cuts.append(cut)
                i = j
                continue
            if clusters[i][0] in _SPACELESS_TERMINATORS:
                k = i + 1
                while k < n and clusters[k][0] in _CLOSERS:
                    k += 1
                if k < n and not clusters[k].isspace():
                    self.sentence_cuts.append((k, k))
                i = k
                continue
            i += 1

    def __len__(self) -> int:
        return len(self.clusters)

    def text(self, start: int, end: int) -> str:
        return "".join(self.clusters[start:end])

    def size(self, start: int, end: int) -> int:
        return self.cum[end] - self.cum[start]

    def last_cut(self, kind: str, start: int, budget: int) -> tuple[int, int] | None:
        """The last sentence or word cut whose part from ``start`` is 1..``budget`` code points."""
        if kind == "sentence":
            cuts, ends = self.sentence_cuts, self.sentence_ends
        else:
            cuts, ends = self.word_cuts, self.word_ends
        idx = bisect.bisect_right(ends, self.cum[start] + budget) - 1
        if idx >= 0 and ends[idx] > self.cum[start]:
            return cuts[idx]
        return None

    def hard_cut(self, start: int, budget: int) -> tuple[int, int]:
        """The furthest grapheme boundary within ``budget``; at least one cluster (pieces fit)."""
        end = bisect.bisect_right(self.cum, self.cum[start] + budget) - 1
        end = max(end, start + 1)
        return end, end

    def skip_space(self, index: int) -> int:
        while index < len(self.clusters) and self.clusters[index].isspace():
            index += 1
        return index


def split_text(text: str, *, limit: int = MAX_TEXT_CHARS, max_parts: int = MAX_PARTS) -> list[str]:
    """Cut ``text`` into at most ``max_parts`` messages of 1..``limit`` characters each.

    Each part is cut at the last sentence end (or line break) that fits, else the last space, else
    the last grapheme-cluster boundary; whitespace at a cut is dropped, nothing else is. Characters
    are Unicode code points (``len``); see ``messenger/limits.py`` for what Facebook counts. When the
    text needs more than ``max_parts`` parts, the last part is cut at a sentence end (else a word,
    else a cluster boundary) and ends with ``" …"`` (``"…"`` after a word or hard cut), within
    ``limit``. Empty or whitespace-only text gives ``[]``.

    Raises ``ValueError`` when ``limit`` < 2 (no room for a character and the ellipsis) or
    ``max_parts`` < 1.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2")
    if max_parts < 1:
        raise ValueError("max_parts must be at least 1")
    seg = _Segmented(text, max_cluster=limit - len(ELLIPSIS))
    n = len(seg)
    parts: list[str] = []
    start = 0
    while start < n:
        if seg.size(start, n) <= limit:
            parts.append(seg.text(start, n))
            break
        if len(parts) == max_parts - 1:
            parts.append(_truncated_part(seg, start, limit))
            break
        end, next_start = (
            seg.last_cut("sentence", start, limit)
            or seg.last_cut("word", start, limit)
            or seg.hard_cut(start, limit)
        )
        parts.append(seg.text(start, end))
        start = seg.skip_space(next_start)
    return parts


def _truncated_part(seg: _Segmented, start: int, limit: int) -> str:
    sentence_suffix = " " + ELLIPSIS
    cut = seg.last_cut("sentence", start, limit - len(sentence_suffix))
    if cut is not None:
        return seg.text(start, cut[0]) + sentence_suffix
    cut = seg.last_cut("word", start, limit - len(ELLIPSIS)) or seg.hard_cut(start, limit - len(ELLIPSIS))
    return seg.text(start, cut[0]) + ELLIPSIS


def shorten(value: str, limit: int) -> str:
    """``value`` within ``limit`` code points, cut at a grapheme boundary and ended with ``…`` if cut."""
    if len(value) <= limit:
        return value
    kept: list[str] = []
    size = 0
    for cluster in _clusters(value):
        for piece in _pieces(cluster, max(1, limit - len(ELLIPSIS))):
            if size + len(piece) > limit - len(ELLIPSIS):
                return "".join(kept).rstrip() + ELLIPSIS
            kept.append(piece)
            size += len(piece)
    return "".join(kept)  # pragma: no cover - unreachable: the loop returns once over the limit
