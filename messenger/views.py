"""The V2 webhook (placeholder while the ingress is written)."""

from rest_framework.views import APIView


class WebhookV2View(APIView):
    pass
