"""Tests for messenger/markdown.py: markdown rendered as the plain text Messenger can show."""

from __future__ import annotations

import pytest

from messenger.markdown import strip_markdown


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("# Heading\n\nBody", "Heading\n\nBody"),
        ("Setext heading\n===\n\nBody", "Setext heading\n\nBody"),
        ("**bold** __also__ *it* _it_ ~~gone~~", "bold also it it gone"),
        ("Use `pip install x` now", "Use pip install x now"),
        ("```python\nprint('hi')\n```", "print('hi')"),
        ("    indented = True", "indented = True"),
        ("See [the docs](https://example.com/d).", "See the docs (https://example.com/d)."),
        ("Go to <https://example.com>", "Go to https://example.com"),
        ("[https://example.com](https://example.com)", "https://example.com"),
        ("Mail <team@example.com>", "Mail team@example.com"),
        ("Logo: ![Our logo](https://example.com/l.png)", "Logo: Our logo"),
        ("Before ![](https://example.com/l.png)after", "Before after"),
        ("- one\n- two\n* three", "• one\n• two\n\n• three"),
        ("1. first\n2. second", "1. first\n2. second"),
        ("3. third\n4. fourth", "3. third\n4. fourth"),
        ("- outer\n  - inner\n- next", "• outer\n  • inner\n• next"),
        ("> quoted\n> lines", "quoted\nlines"),
        (
            "| Plan | Price |\n|---|---|\n| Basic | 5 € |\n| Pro | 9 € |",
            "Plan | Price\nBasic | 5 €\nPro | 9 €",
        ),
        ("Line one  \nline two", "Line one\nline two"),
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("a<br>b", "a\nb"),
        ("<div>Hello <b>there</b></div>", "Hello there"),
        ("Above\n\n---\n\nBelow", "Above\n\nBelow"),
        ("snake_case_name and 2 * 3 = 6", "snake_case_name and 2 * 3 = 6"),
        ("Escaped \\*stars\\*", "Escaped *stars*"),
        ("Plain text, no markup at all.", "Plain text, no markup at all."),
        ("", ""),
        ("   \n  ", ""),
    ],
)
def test_strip_markdown_renders_each_construct_as_plain_text(source, expected):
    """Each markdown construct has one plain-text rendering (lists as bullets, tables as lines)."""
    assert strip_markdown(source) == expected


def test_strip_markdown_leaves_no_markup_in_a_typical_model_answer():
    """A chat model's typical formatted answer loses every markup character sequence."""
    answer = (
        "# Your options\n\n"
        "Here is **what you can do**:\n\n"
        "1. *Reset* your password at [the portal](https://example.com/reset)\n"
        "2. Contact ~~sales~~ support\n\n"
        "| Channel | Hours |\n| --- | :---: |\n| Phone | 9-17 |\n\n"
        "> Tip: use `Ctrl+R` to refresh.\n\n"
        "```\nerror: code 42\n```\n"
    )
    plain = strip_markdown(answer)
    for markup in ("**", "# ", "~~", "`", "](", "|---", "> ", "```"):
        assert markup not in plain
    assert plain == (
        "Your options\n\n"
        "Here is what you can do:\n\n"
        "1. Reset your password at the portal (https://example.com/reset)\n"
        "2. Contact sales support\n\n"
        "Channel | Hours\nPhone | 9-17\n\n"
        "Tip: use Ctrl+R to refresh.\n\n"
        "error: code 42"
    )
