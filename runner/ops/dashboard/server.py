"""The dashboard's HTTP server: the stdlib's ThreadingHTTPServer in front of api.Dashboard.

One thread per request, so a slow AWS call (a peek of a dead-letter queue) does not hold the
page's other requests. The handler only translates between HTTP and api.Request/Response;
whatever a request holds, api.Dashboard answers it, and a client that hangs up is not an error.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from runner.ops import status, top
from runner.ops.dashboard import api
from runner.ops.dashboard.guard import Guard

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8642
#: A request's header block and body are read up to these sizes.
MAX_HEADER_BYTES = 16 * 1024
#: A connection silent this long (half a request, or idle between a page's requests) is closed:
#: each holds a thread, and a client sending a byte a minute would hold one for ever.
CLIENT_TIMEOUT_SECONDS = 30.0


class Server(ThreadingHTTPServer):
    daemon_threads = True
    client_timeout = CLIENT_TIMEOUT_SECONDS

    def __init__(self, address: tuple[str, int], dashboard: api.Dashboard | None) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)
        self.dashboard = dashboard

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("dashboard: a request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = "galley-dashboard"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # a read that waits longer raises TimeoutError: handle_one_request closes the connection
        self.connection.settimeout(self.server.client_timeout)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer()

    # the methods api.Dashboard refuses with a JSON 405 (the stdlib would answer a 501 page)
    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = do_GET

    def _answer(self, *, body: bool = True) -> None:
        length = self.headers.get("Content-Length", "0")
        size = int(length) if length.isdigit() else -1
        if "Transfer-Encoding" in self.headers:
            # not read here: its chunks would be taken for the next request on the connection
            answer = api.Response(411, b'{"error": "send the body with a Content-Length"}')
            self.close_connection = True
        elif not 0 <= size <= api.MAX_BODY_BYTES:
            answer = api.Response(
                413, b'{"error": "the request body is missing its length or too large"}'
            )
            self.close_connection = True
        else:
            request = api.Request(
                method=self.command,
                target=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=self.rfile.read(size) if size else b"",
            )
            assert self.server.dashboard is not None
            answer = self.server.dashboard.handle(request)
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            for name, value in {**api.SECURITY_HEADERS, **answer.headers}.items():
                self.send_header(name, value)
            self.end_headers()
            if body:
                self.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the page went away; nothing to tell it

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        log.debug("dashboard: " + format, *args)


class Running:
    """A dashboard server serving in a thread of this process; :meth:`stop` ends it."""

    def __init__(self, server: Server, guard: Guard) -> None:
        self.server, self.guard = server, guard
        self.thread = threading.Thread(target=server.serve_forever, name="dashboard", daemon=True)

    @property
    def url(self) -> str:
        """Where to open it (with the token, which the page swaps for a cookie at once)."""
        host = self.guard.host
        shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104
        shown = f"[{shown}]" if ":" in shown else shown
        token = f"?token={self.guard.token}" if self.guard.token else ""
        return f"http://{shown}:{self.guard.port}/{token}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def start(
    target: status.Target,
    clients: Callable[[str], Any],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    interval: float = top.DEFAULT_INTERVAL,
) -> Running:
    """Bind ``host``:``port`` (0: any free port) and serve the dashboard of ``target`` in a
    daemon thread. ValueError (one line) for a binding that needs a token and has none, OSError
    when the address cannot be bound, StatusError when the stack has no results bucket."""
    Guard(host, 1, token)  # the binding rule, checked before anything is bound
    server = Server((host, port), None)
    try:
        guard = Guard(host, server.server_address[1], token)
        server.dashboard = api.Dashboard(target, clients, guard, interval=interval)
    except BaseException:
        server.server_close()
        raise
    running = Running(server, guard)
    running.thread.start()
    return running
