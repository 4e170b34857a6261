"""The API's HTTP server and its Unix socket: bounded per connection (send buffer,
header size, idle time), and a socket only this user can open."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_unix_socket

SEND_BUFFER = 256 * 1024  # kernel buffering per API reader: a reader's backlog is bounded here
# Requests are small and come at once; a body is only POST /v1/chat/completions', whose
# messages (an OpenAI client sends its prompt) are read and ignored.
LIMITS = {"max_header_size": 16 * 1024, "max_body_size": 8 << 20, "idle_connection_timeout": 60.0,
          "body_timeout": 10.0}


class ApiHTTPServer(HTTPServer):
    """Every API connection gets a bounded kernel send buffer, so that a reader that stops
    reading is noticed (and cut off) after a known amount, whatever the system defaults;
    request line and headers are capped (16 KiB) and idle connections closed (60 s)."""

    def initialize(self, request_callback, **kwargs) -> None:  # type: ignore[override]
        super().initialize(request_callback, **{**LIMITS, **kwargs})

    def handle_stream(self, stream, address) -> None:
        try:
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            pass
        super().handle_stream(stream, address)


def bind_private_unix_socket(path: Path) -> socket.socket:
    """Bind `path` with mode 0600 in a 0700 directory, refusing to steal a live socket."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise OSError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: left by a process that did not shut down
        else:
            raise OSError(f"another process is serving on {path} (a streamtap already running? "
                          "stop it, or give this one --api-socket PATH)")
        finally:
            probe.close()
    old_umask = os.umask(0o177)
    try:
        return bind_unix_socket(str(path), mode=0o600)
    finally:
        os.umask(old_umask)
