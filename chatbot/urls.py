"""URL routes; the paths are fixed by the contract (see README)."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from chatbot.health import healthz
from messenger import legacy, views
from messenger.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("django-rq/", include("django_rq.urls")),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("messenger/webhook", legacy.webhook_v1, name="messenger-webhook-v1"),
    path("messenger/v2/webhook", views.WebhookV2View.as_view(), name="messenger-webhook-v2"),
]

if settings.BENCH_BASELINE_ROUTE:
    from chatbot.bench_views import BaselineView

    urlpatterns.append(path("bench/baseline", BaselineView.as_view(), name="bench-baseline"))
