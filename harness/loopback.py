"""A threaded HTTP server on 127.0.0.1 that a test or a bench starts and stops: the fake peers' common part.

``harness.fake_graph.FakeGraph`` (the Send API) and ``harness.fake_model.FakeModel`` (a slow model)
differ in what they answer, not in how they listen: one daemon thread per connection (so a slow
answer never holds up the next caller), a port the kernel picks, ``start()``/``stop()`` or a ``with``
block. A subclass gives its handler class and may do more on :meth:`LoopbackServer.stop`.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer:
    def __init__(self, handler: type[BaseHTTPRequestHandler], *, name: str, backlog: int = 256) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.request_queue_size = backlog
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)

    @property
    def url(self) -> str:
        """The server's root, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
