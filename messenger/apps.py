"""The messenger app's configuration: at start-up it hands its reply limits to the engine and its
staff-action handlers (staff reply, give back) to the conversation admin."""

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
        # The conversation admin's staff reply and give-back reach the channel without importing it.
        from conversations.staff_handlers import staff_handlers_register
        from messenger.inbox_view import staff_reply_preview, transcript_markers
        from messenger.staff_reply import staff_give_back, staff_reply_queue

        staff_handlers_register(
            reply=staff_reply_queue, give_back=staff_give_back, preview=staff_reply_preview, markers=transcript_markers
        )
