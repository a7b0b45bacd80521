"""A bare DRF view answering 200, the floor bench/ingress.py compares the webhook against.

Routed only when ``BENCH_BASELINE_ROUTE`` is set; never in a normal deployment.
"""

from rest_framework.response import Response
from rest_framework.views import APIView


class BaselineView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def post(self, request):
        return Response({"ok": True})
