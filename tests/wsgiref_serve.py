"""Serves a WSGI app with the standard library's wsgiref (threaded), for tests."""

from __future__ import annotations

import importlib
import signal
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def main() -> None:
    host, port = sys.argv[1].rsplit(":", 1)
    module_name, attr = sys.argv[2].split(":")
    app = getattr(importlib.import_module(module_name), attr)
    server = make_server(host, int(port), app, ThreadingWSGIServer, QuietHandler)
    # SIGTERM becomes a normal exit, so at-exit hooks (the final flush) run.
    signal.signal(signal.SIGTERM, lambda *args: sys.exit(0))
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
