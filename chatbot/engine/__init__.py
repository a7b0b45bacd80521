"""The chat engine: turns a conversation context into a reply. See ``get_engine``."""
