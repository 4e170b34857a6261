"""A small synchronous HTTP client for the API's Unix socket, for tests (the SDK is
proxy_core.client, async)."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def get_json(socket_path: str, path: str, timeout: float = 10) -> Any:
    conn = UnixHTTPConnection(socket_path, timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status >= 400:
            raise ConnectionError(f"GET {path}: {resp.status} {body.decode(errors='replace').strip()}")
        return json.loads(body)
    finally:
        conn.close()


def follow_events(socket_path: str, since: int | str = 0, **params: str) -> Iterator[dict[str, Any]]:
    """Events as dicts, following the live stream (NDJSON), without reconnecting."""
    query = urlencode({"since": since, **params})
    conn = UnixHTTPConnection(socket_path)
    try:
        conn.request("GET", f"/v1/events?{query}", headers={"Accept": "application/x-ndjson"})
        resp = conn.getresponse()
        if resp.status >= 400:
            raise ConnectionError(f"{resp.status} {resp.read().decode(errors='replace').strip()}")
        for line in resp:
            if line.strip():
                yield json.loads(line)
    finally:
        conn.close()
