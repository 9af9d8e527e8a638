"""The local cloud's HTTP servers (API Gateway, iot-data, the phones' console): loopback only, a
thread per request, no request log."""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from boxwatch_infra.aws.ports import HOST


class QuietHandler(BaseHTTPRequestHandler):
    """A request of a method in `METHODS` goes to `route(method)`; other methods get 501, as from
    any BaseHTTPRequestHandler without that do_ method."""

    protocol_version = "HTTP/1.1"
    METHODS: frozenset[str] = frozenset()

    def route(self, method: str) -> None:
        raise NotImplementedError

    def _dispatch(self, method: str) -> None:
        if method in self.METHODS:
            self.route(method)
        else:
            self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({method!r})")

    def __getattr__(self, name: str) -> Any:
        # http.server calls do_<METHOD>: every method goes through the one dispatch
        if name.startswith("do_"):
            return functools.partial(self._dispatch, name[3:])
        raise AttributeError(name)

    def log_message(self, fmt: str, *args: Any) -> None:
        pass  # a line per request would drown the demo's output

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            if k.lower() != "content-length":  # ours is the length of what is sent
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(handler: type[BaseHTTPRequestHandler], port: int, name: str) -> ThreadingHTTPServer:
    """Serve on 127.0.0.1:port (0: any free port, `server.server_address[1]`) from a daemon thread."""
    server = ThreadingHTTPServer((HOST, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server


def shutdown(server: ThreadingHTTPServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()
