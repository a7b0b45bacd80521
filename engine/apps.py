"""The engine app's configuration."""

from django.apps import AppConfig


class EngineConfig(AppConfig):
    """The chat engine: below the channel apps, it knows no channel (Messenger's limits reach it from above)."""

    name = "engine"
    verbose_name = "Chat engine"
