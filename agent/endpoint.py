"""The agent's local HTTP endpoint: /metrics for Prometheus and /healthz for liveness probes.

A threaded stdlib wsgiref server, as prometheus_client's own `start_http_server` uses, not
aiohttp.web: prometheus_client imports that machinery anyway, while aiohttp.web adds about
1.7 MiB of imports (measured RSS) to an agent that serves only these two GET routes. /healthz
still proves the event loop is alive: it asks the loop to run a callback, 503 if it does not.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from agent import metrics

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


LOOP_TIMEOUT_SECONDS = 5.0  # /healthz fails if the event loop cannot run a callback this fast


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds up shutdown


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes are not news: no line per request."""


class ListenError(Exception):
    """The endpoint's address cannot be listened on (taken, not this machine's, not allowed):
    a one-line reason that names the address and what to do."""


class Endpoint:
    """A running endpoint; `close()` stops it and waits for its thread."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    def close(self) -> None:
        """Stop serving (blocks up to the server's 0.5 s poll): call it through a thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def create_app(loop: asyncio.AbstractEventLoop) -> WSGIApplication:
    """The WSGI app: /metrics from the agent's registry, /healthz from the loop's liveness."""
    metrics_app: WSGIApplication = make_wsgi_app(metrics.REGISTRY)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            alive = _loop_alive(loop)
            body = json.dumps({"status": "ok" if alive else "event loop blocked"}).encode()
            status = "200 OK" if alive else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"404: Not Found"]

    return app


def serve(listen: str, loop: asyncio.AbstractEventLoop) -> Endpoint:
    """Bind HOST:PORT now (errors surface at start, as ListenError) and serve in a daemon
    thread."""
    host, _, port = listen.rpartition(":")
    try:
        server = make_server(
            host or "127.0.0.1", int(port), create_app(loop), _Server, handler_class=_QuietHandler
        )
    except OSError as exc:
        why = exc.strerror.lower() if exc.strerror else str(exc)
        raise ListenError(
            f"cannot serve /metrics on {listen}: {why}; stop what uses it, or pick another "
            "address with --metrics-listen (env FLOTILLA_METRICS_LISTEN), or 'off'"
        ) from None
    thread = threading.Thread(target=server.serve_forever, name="endpoint", daemon=True)
    thread.start()
    return Endpoint(server, thread)


def _loop_alive(loop: asyncio.AbstractEventLoop) -> bool:
    answered = threading.Event()
    try:
        loop.call_soon_threadsafe(answered.set)
    except RuntimeError:  # the loop is closed: the agent is not serving
        return False
    return answered.wait(LOOP_TIMEOUT_SECONDS)
