"""The messenger app's configuration: at start-up it hands Facebook's reply limits down to the engine."""

from django.apps import AppConfig


class MessengerConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "messenger"
    verbose_name = "Messenger channel"

    def ready(self) -> None:
        # The engine below may not import this app, yet its rules file must fit Messenger: hand the
        # limits down before anything builds an engine.
        from engine import reply_limits_register
        from messenger.limits import REPLY_LIMITS

        reply_limits_register(limits=REPLY_LIMITS)
