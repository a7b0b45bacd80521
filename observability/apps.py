"""The observability app's configuration: at start-up it connects the receivers of the pipeline's signals."""

from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "observability"

    def ready(self) -> None:
        # Connect the receivers that turn pipeline signals into Event rows (receivers) and into the
        # /metrics counters in Redis (metric_receivers).
        from observability import metric_receivers, receivers  # noqa: F401
