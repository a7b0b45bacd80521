"""The pages this channel serves, with their tokens: the one place that lists them.

Today there is one page, configured by ``MESSENGER_PAGE_ACCESS_TOKEN`` (and optionally
``MESSENGER_PAGE_ID``). A later issue adds a ``Page`` model holding several pages with their own
tokens; it extends :func:`pages_configured` only, so every caller (``messenger_check`` first) gets
the new pages without changing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings


@dataclass(frozen=True)
class PageCredentials:
    """One page and the token that acts for it.

    ``page_id`` may be ``""`` in the one-page setup when ``MESSENGER_PAGE_ID`` is unset (the token
    then says which page it belongs to). ``token`` is left out of ``repr`` so a page never prints it.
    """

    page_id: str
    name: str = ""
    token: str = field(default="", repr=False)


def page_token(*, page_id: str) -> str:
    """The token the channel acts with for ``page_id``; ``""`` when no page of that id is served.

    The one-page setup without ``MESSENGER_PAGE_ID`` serves whatever page its token belongs to.
    """
    for page in pages_configured():
        if page.page_id in ("", page_id):
            return page.token
    return ""


def pages_configured() -> list[PageCredentials]:
    """Every page with a token, in a stable order; ``[]`` when none is configured."""
    token = settings.MESSENGER_PAGE_ACCESS_TOKEN
    if not token:
        return []
    return [PageCredentials(page_id=settings.MESSENGER_PAGE_ID, name="", token=token)]
