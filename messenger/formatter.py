"""Turn an engine :class:`~engine.types.Reply` into the Send API ``message`` objects Facebook accepts.

Three steps, each a public function so callers and tests can use them alone:

1. :func:`strip_markdown` renders markdown (what chat models write) as plain text, because Messenger
   shows ``**`` and ``#`` literally. It walks markdown-it-py's syntax tree (CommonMark plus tables
   and strikethrough) instead of guessing with regular expressions, so ``snake_case`` or ``2 * 3``
   survive untouched.
2. :func:`split_text` cuts a long text into messages of at most 2,000 characters, preferring sentence
   ends, then spaces, then any grapheme-cluster boundary (the ``regex`` module's ``\\X``, which knows
   Unicode's segmentation rules): a flag, a family emoji joined by ZWJ or a letter with its
   combining accents is never torn apart.
3. :func:`format_reply` assembles the messages: text parts, then a button template, then a generic
   template (carousel), with the quick replies on the last message. Every structured part is checked
   against Facebook's documented limits and degraded rather than sent to be refused.

Facebook's limits, each with its source and what a "character" is, are in ``messenger/limits.py``.

How each limit degrades (the contract the tests pin down):

* Text: split into at most :data:`MAX_PARTS` messages; past that, the last message is cut at a
  sentence end (else a word, else a grapheme cluster) and ends with ``…``, still within the limit.
* Quick replies: invalid ones (empty title, empty payload or payload over 1,000) are dropped; titles
  over 20 are shortened with ``…``; past 13, the rest are dropped.
* Button template: buttons with an empty title, a postback without payload or with one over 1,000,
  or a ``web_url`` whose URL is not absolute http(s) are dropped; titles are shortened to 20. Past
  three buttons, extra postback buttons become quick replies (still tappable) and extra URL buttons
  become "title: url" lines of the text. A text over 640 characters is sent as ordinary text
  messages and the buttons follow in a template whose text is :data:`messenger.texts.BUTTONS_PROMPT`
  (also used when the reply has no text but has cards). No valid button left: plain text.
* Generic template: titles and subtitles are shortened to 80; a card without title takes its
  subtitle as title; an ``image_url`` that is not http(s) is omitted; buttons are checked as above and
  past three are dropped. A card left with only a title (Facebook refuses it) and cards past ten
  become "• title: subtitle (url)" lines of a text message after the carousel.
* A reply with neither text nor cards gives ``[]``: quick replies and buttons need something to hang on.

Every degradation is logged (``messenger.format.*`` with the reply's intent): it points at an engine
answer or a data-file entry to fix.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Sequence
from functools import cache
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

import regex
from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from engine.types import Button, Card, QuickReply, Reply
from messenger import texts
from messenger.limits import (
    BUTTON_TEMPLATE_TEXT_CHARS,
    BUTTON_TITLE_CHARS,
    CARD_SUBTITLE_CHARS,
    CARD_TITLE_CHARS,
    MAX_BUTTONS,
    MAX_CARD_BUTTONS,
    MAX_CARDS,
    MAX_QUICK_REPLIES,
    MAX_TEXT_CHARS,
    PAYLOAD_CHARS,
    QUICK_REPLY_TITLE_CHARS,
)

logger = logging.getLogger("messenger.format")

MAX_PARTS = 5

ELLIPSIS = texts.TRUNCATION_ELLIPSIS


# --------------------------------------------------------------------------------------------------
# Markdown to plain text
# --------------------------------------------------------------------------------------------------


@cache
def _parser() -> MarkdownIt:
    # CommonMark with raw HTML recognised (so tags can be dropped rather than shown), plus the two
    # GitHub extensions chat models use most. No linkify: bare URLs are plain text already.
    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


class _HTMLText(HTMLParser):
    """Collects the text of an HTML fragment; block-level tags become line breaks."""

    _BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _html_text(fragment: str) -> str:
    parser = _HTMLText()
    parser.feed(fragment)
    parser.close()
    return "\n".join(" ".join(line.split()) for line in "".join(parser.parts).splitlines()).strip()


def _link_text(label: str, href: str) -> str:
    """``text (url)``, or just the URL when the label is the URL (autolinks, pasted links)."""
    if not href:
        return label
    if not label:
        return href
    plain_href = unquote(href)
    if label in (href, plain_href) or f"mailto:{label}" in (href, plain_href):
        return label
    return f"{label} ({href})"


def _inline(nodes: Iterable[SyntaxTreeNode]) -> str:
    out: list[str] = []
    for node in nodes:
        kind = node.type
        if kind in ("text", "code_inline"):
            out.append(node.content)
        elif kind in ("softbreak", "hardbreak"):
            # Chat models mean their single line breaks; Messenger shows them, so keep them.
            out.append("\n")
        elif kind == "link":
            out.append(_link_text(_inline(node.children).strip(), str(node.attrs.get("href", ""))))
        elif kind == "image":
            out.append(node.content)  # the alt text, already plain; empty alt drops the image
        elif kind == "html_inline":
            if node.content.lower().replace(" ", "").startswith("<br"):
                out.append("\n")
        else:  # strong, em, s and anything a plugin might add: keep the content, drop the markup
            out.append(_inline(node.children))
    return "".join(out)


def _inline_of(node: SyntaxTreeNode) -> str:
    """The plain text of a block whose children are one ``inline`` node (paragraph, heading, cell)."""
    return "".join(_inline(child.children) for child in node.children if child.type == "inline").strip()


def _list_lines(node: SyntaxTreeNode, depth: int) -> list[str]:
    """A list as lines: ``• item`` for bullets, ``3. item`` for numbered lists (the order is content).

    Nested lists are indented two spaces per level; an item's further lines line up under its text.
    """
    ordered = node.type == "ordered_list"
    number = int(node.attrs.get("start", 1)) if ordered else 0
    indent = "  " * depth
    lines: list[str] = []
    for item in node.children:
        marker = f"{number}. " if ordered else "• "
        number += 1
        placed = False  # whether this item's marker line is out
        for child in item.children:
            if child.type in ("bullet_list", "ordered_list"):
                if not placed:
                    lines.append(indent + marker.rstrip())
                    placed = True
                lines.extend(_list_lines(child, depth + 1))
                continue
            for block in _blocks_of(child):
                for line in block.splitlines():
                    lines.append(indent + ("  " if placed else marker) + line)
                    placed = True
    return lines


def _table_lines(node: SyntaxTreeNode) -> list[str]:
    lines = []
    for section in node.children:  # thead, tbody
        for row in section.children:  # tr
            cells = [_inline_of(cell) for cell in row.children]
            if any(cells):
                lines.append(" | ".join(cells))
    return lines


def _blocks_of(node: SyntaxTreeNode) -> list[str]:
    kind = node.type
    if kind in ("paragraph", "heading"):
        return [_inline_of(node)]
    if kind in ("fence", "code_block"):
        return [node.content.rstrip("\n")]
    if kind in ("bullet_list", "ordered_list"):
        return ["\n".join(_list_lines(node, 0))]
    if kind == "table":
        return ["\n".join(_table_lines(node))]
    if kind == "html_block":
        return [_html_text(node.content)]
    if kind == "hr":
        return []
    # blockquote, the document root, and container blocks a plugin might add.
    out: list[str] = []
    for child in node.children:
        out.extend(_blocks_of(child))
    return out


def strip_markdown(text: str) -> str:
    """Render markdown as plain text for Messenger, keeping every word a reader needs.

    Headings, emphasis and strikethrough lose their markers; code (fenced, indented or inline) keeps
    its text; links become ``text (url)`` (just the URL when the text is the URL); images become
    their alt text; list items become ``• item`` lines (numbered items keep their number, since the
    order is part of the content); table rows become lines with cells joined by `` | ``; blockquotes
    become plain lines; raw HTML is reduced to its text. Blocks are separated by one blank line.
    Text without markdown comes back unchanged apart from surrounding whitespace.
    """
    if not text or not text.strip():
        return ""
    root = SyntaxTreeNode(_parser().parse(text))
    blocks = [block for block in _blocks_of(root) if block.strip()]
    lines = "\n\n".join(blocks).split("\n")
    out: list[str] = []
    for line in lines:
        line = line.rstrip()
        if not line and (not out or not out[-1]):
            continue  # at most one blank line in a row
        out.append(line)
    return "\n".join(out).strip()


# --------------------------------------------------------------------------------------------------
# Splitting long text
# --------------------------------------------------------------------------------------------------

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
    are Unicode code points (``len``); see the module docstring for what Facebook counts. When the
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


# --------------------------------------------------------------------------------------------------
# Structured replies
# --------------------------------------------------------------------------------------------------


def _one_line(value: str) -> str:
    return " ".join((value or "").split())


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


def is_http_url(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL with a host and no whitespace or control characters."""
    if not url or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host)


def _degraded(event: str, *, intent: str, **context: object) -> None:
    logger.warning(f"messenger.format.{event}", extra={"intent": intent, **context})


def _button(button: Button, *, intent: str) -> dict | None:
    """A Send API button object, or ``None`` (logged) when Facebook would refuse it."""
    title = shorten(_one_line(button.title), BUTTON_TITLE_CHARS)
    if not title:
        _degraded("button_dropped", intent=intent, reason="empty_title")
        return None
    if title != _one_line(button.title):
        _degraded("button_title_shortened", intent=intent, limit=BUTTON_TITLE_CHARS)
    if button.type == "web_url":
        if not is_http_url(button.url):
            _degraded("button_dropped", intent=intent, reason="invalid_url")
            return None
        return {"type": "web_url", "url": button.url, "title": title}
    if button.type == "postback":
        if not button.payload or len(button.payload) > PAYLOAD_CHARS:
            _degraded("button_dropped", intent=intent, reason="invalid_payload")
            return None
        return {"type": "postback", "title": title, "payload": button.payload}
    _degraded("button_dropped", intent=intent, reason="unknown_type", button_type=str(button.type))
    return None


def _quick_replies(items: Sequence[QuickReply], *, intent: str) -> list[dict]:
    out: list[dict] = []
    for item in items:
        title = _one_line(item.title)
        payload = item.payload if isinstance(item.payload, str) else str(item.payload)
        if not title or not payload or len(payload) > PAYLOAD_CHARS:
            _degraded("quick_reply_dropped", intent=intent, reason="invalid_title_or_payload")
            continue
        short = shorten(title, QUICK_REPLY_TITLE_CHARS)
        if short != title:
            _degraded("quick_reply_title_shortened", intent=intent, limit=QUICK_REPLY_TITLE_CHARS)
        out.append({"content_type": "text", "title": short, "payload": payload})
    if len(out) > MAX_QUICK_REPLIES:
        _degraded("quick_replies_truncated", intent=intent, count=len(out), limit=MAX_QUICK_REPLIES)
        out = out[:MAX_QUICK_REPLIES]
    return out


def _card_line(card: Card) -> str:
    line = "• " + (_one_line(card.title) or _one_line(card.subtitle))
    if card.title.strip() and card.subtitle.strip():
        line += ": " + _one_line(card.subtitle)
    url = next((b.url for b in card.buttons if b.type == "web_url" and is_http_url(b.url)), "")
    return f"{line} ({url})" if url else line


def _card_element(card: Card, *, intent: str) -> dict | None:
    """A generic-template element, or ``None`` when the card can only be said as text."""
    title = _one_line(card.title)
    subtitle = _one_line(card.subtitle)
    if not title:
        title, subtitle = subtitle, ""
    if not title:
        _degraded("card_dropped", intent=intent, reason="empty")
        return None
    if len(title) > CARD_TITLE_CHARS or len(subtitle) > CARD_SUBTITLE_CHARS:
        _degraded("card_text_shortened", intent=intent, limit=CARD_TITLE_CHARS)
    element: dict = {"title": shorten(title, CARD_TITLE_CHARS)}
    if subtitle:
        element["subtitle"] = shorten(subtitle, CARD_SUBTITLE_CHARS)
    if card.image_url:
        if is_http_url(card.image_url):
            element["image_url"] = card.image_url
        else:
            _degraded("card_image_dropped", intent=intent, reason="invalid_url")
    buttons = [b for b in (_button(button, intent=intent) for button in card.buttons) if b]
    if len(buttons) > MAX_CARD_BUTTONS:
        _degraded("card_buttons_truncated", intent=intent, count=len(buttons), limit=MAX_CARD_BUTTONS)
        buttons = buttons[:MAX_CARD_BUTTONS]
    if buttons:
        element["buttons"] = buttons
    if len(element) == 1:
        # Facebook: "At least one property must be set in addition to title".
        _degraded("card_as_text", intent=intent, reason="title_only")
        return None
    return element


def _text_messages(text: str) -> list[dict]:
    return [{"text": part} for part in split_text(text)]


def _button_template(text: str, buttons: list[dict]) -> dict:
    return {
        "attachment": {
            "type": "template",
            "payload": {"template_type": "button", "text": text, "buttons": buttons},
        }
    }


def format_reply(reply: Reply) -> list[dict]:
    """The ordered Send API ``message`` objects for one reply (see the module docstring for limits).

    Order: the text (as text messages, or as the text of a button template when it has buttons and
    fits), the button template, the generic template, text lines for cards that could not be cards;
    quick replies ride on the last message. Returns ``[]`` for a reply with neither text nor cards.
    Never raises for content: whatever Facebook would refuse is shortened, moved or dropped (logged).
    """
    intent = reply.intent
    text = strip_markdown(reply.text or "")
    if not text and not reply.cards:
        return []

    # Buttons: the first three valid ones stay; extra postbacks become quick replies, extra URLs text.
    template_buttons: list[dict] = []
    extra_quick: list[QuickReply] = []
    extra_lines: list[str] = []
    for button in reply.buttons:
        rendered = _button(button, intent=intent)
        if rendered is None:
            continue
        if len(template_buttons) < MAX_BUTTONS:
            template_buttons.append(rendered)
        elif button.type == "postback":
            extra_quick.append(QuickReply(title=button.title, payload=button.payload))
        else:
            extra_lines.append(f"{_one_line(button.title)}: {button.url}")
    if extra_quick or extra_lines:
        _degraded("buttons_overflow", intent=intent, count=len(reply.buttons), limit=MAX_BUTTONS)
    if extra_lines:
        text = "\n\n".join(filter(None, [text, "\n".join(extra_lines)]))

    # Cards: the first ten valid ones make the carousel; the rest are said as lines of text.
    elements: list[dict] = []
    card_lines: list[str] = []
    for card in reply.cards:
        element = _card_element(card, intent=intent)
        if element is not None and len(elements) < MAX_CARDS:
            elements.append(element)
        elif element is not None or card.title.strip() or card.subtitle.strip():
            if element is not None:
                _degraded("card_as_text", intent=intent, reason="over_limit", limit=MAX_CARDS)
            card_lines.append(_card_line(card))

    messages: list[dict] = []
    if template_buttons:
        if text and len(text) <= BUTTON_TEMPLATE_TEXT_CHARS:
            messages.append(_button_template(text, template_buttons))
        else:
            if text:
                _degraded("button_text_too_long", intent=intent, limit=BUTTON_TEMPLATE_TEXT_CHARS)
            messages.extend(_text_messages(text))
            messages.append(_button_template(texts.BUTTONS_PROMPT, template_buttons))
    else:
        messages.extend(_text_messages(text))
    if elements:
        generic = {"template_type": "generic", "elements": elements}
        messages.append({"attachment": {"type": "template", "payload": generic}})
    if card_lines:
        messages.extend(_text_messages("\n".join(card_lines)))

    quick = _quick_replies([*reply.quick_replies, *extra_quick], intent=intent)
    if quick and messages:
        messages[-1]["quick_replies"] = quick
    return messages
