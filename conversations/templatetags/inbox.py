"""``{% waiting_count %}``: how many conversations wait for a person, for the admin index.

One ``COUNT`` on the partial ``conversation_waiting_idx`` index (only waiting rows are in it), so
the index page stays cheap however many conversations there are.
"""

from __future__ import annotations

from django import template

from conversations.models import Conversation

register = template.Library()


@register.simple_tag
def waiting_count() -> int:
    return Conversation.objects.filter(waiting_since__isnull=False).count()
