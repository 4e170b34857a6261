"""Threads for tests that kill the proxy under load: a client streaming one request
through it, and an API follower, each keeping what it got until the connection dies."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

from ..support.api_http import follow_events


class StreamingClient(threading.Thread):
    """One POST through the proxy's CONNECT tunnel, read until the connection ends."""

    def __init__(self, proxy_port: int, ca: Path, host: str, path: str, tag: str) -> None:
        super().__init__(daemon=True)
        self.proxy_port, self.ca, self.host, self.path, self.tag = proxy_port, ca, host, path, tag
        self.received = bytearray()  # the raw HTTP response, headers and chunked framing included

    def run(self) -> None:
        try:
            raw = socket.create_connection(("127.0.0.1", self.proxy_port), timeout=30)
            raw.sendall(f"CONNECT {self.host}:443 HTTP/1.1\r\nHost: {self.host}:443\r\n\r\n".encode())
            if not raw.recv(4096).startswith(b"HTTP/1.1 200"):
                return
            with ssl.create_default_context(cafile=str(self.ca)).wrap_socket(raw, server_hostname=self.host) as tls:
                tls.sendall(f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: 2\r\n"
                            f"x-streamtap-tag: {self.tag}\r\n\r\n{{}}".encode())
                while chunk := tls.recv(65536):
                    self.received += chunk
        except (OSError, ssl.SSLError):
            pass  # the proxy was killed under us


class Follower(threading.Thread):
    """Every event the API delivers, until the process behind it dies."""

    def __init__(self, sock: str) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.events: list[dict[str, Any]] = []

    def run(self) -> None:
        try:
            for event in follow_events(self.sock, since=0):
                self.events.append(event)
        except (OSError, http.client.HTTPException, ValueError):
            pass  # cut off by the kill
