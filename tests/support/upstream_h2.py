"""An HTTP/2 (and HTTP/1.1) upstream on loopback: hypercorn serving a tiny ASGI app that
streams the scripted reply chunk by chunk."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from hypercorn.asyncio import serve
from hypercorn.config import Config

from tests.support.pki import TestPKI
from tests.support.upstream import Reply, Request


class H2Upstream:
    def __init__(self, pki: TestPKI, handler: Callable[[Request], Reply]) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.http_versions: list[str] = []
        self.config = Config()
        self.config.bind = ["127.0.0.1:0"]
        self.config.certfile = str(pki.leaf_cert)
        self.config.keyfile = str(pki.leaf_key)
        self.config.alpn_protocols = ["h2", "http/1.1"]
        self.config.loglevel = "WARNING"
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> H2Upstream:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("h2 upstream did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        # Bind ourselves to learn the port, then hand the socket to hypercorn.
        import socket

        sock = socket.create_server(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        # Hypercorn owns the descriptor from here: detach, or our object would close
        # it again later, by then perhaps someone else's socket.
        self.config.bind = [f"fd://{sock.detach()}"]
        self._ready.set()
        await serve(self._app, self.config, shutdown_trigger=self._stop.wait)

    async def _app(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        target = scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        request = Request(scope["method"], target, headers, body)
        self.requests.append(request)
        self.http_versions.append(scope["http_version"])
        reply = self.handler(request)
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": [(k.encode(), v.encode()) for k, v in reply.headers]})
        for i, chunk in enumerate(reply.chunks):
            if reply.delay and i:
                await asyncio.sleep(reply.delay)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
