"""Markdown, as chat models write it, rendered as plain text, because Messenger shows ``**`` and ``#`` literally.

:func:`strip_markdown` walks markdown-it-py's syntax tree (CommonMark plus tables and strikethrough)
instead of guessing with regular expressions, so ``snake_case`` or ``2 * 3`` survive untouched. The
formatter (``messenger/formatter.py``) calls it first, before cutting the text to Messenger's limits.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from html.parser import HTMLParser
from urllib.parse import unquote

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode


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
