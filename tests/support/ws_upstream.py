"""A real WebSocket server on loopback (TLS, permessage-deflate, the `websockets`
library) that plays the Responses API over WebSocket, Realtime and ChatGPT's topic
socket: for each client `response.create` (or `subscribe`) it sends the scripted
answer, message by message, and records what it sent so tests compare the client's
messages byte for byte."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request as WSRequest

from tests.support.pki import TestPKI

# (client's response.create, the handshake's path) -> the server's messages; a message
# "CLOSE" closes the connection there, "DROP" closes the TCP connection (after what was
# sent) without a WebSocket close frame.
Script = Callable[[dict[str, Any], str], list[Any]]
REQUESTS = frozenset({"response.create", "subscribe"})  # a ChatGPT topic subscribe is answered too


class WebSocketUpstream:
    def __init__(self, pki: TestPKI, script: Script) -> None:
        self.script = script
        self.sent: list[list[str]] = []  # per connection, every message sent, in order
        self.received: list[list[str]] = []
        self.handshakes: list[dict[str, str]] = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pki.leaf_cert, pki.leaf_key)
        self.ctx.set_alpn_protocols(["http/1.1"])
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WebSocketUpstream:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the WebSocket upstream did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = self._loop.create_future()
        async with serve(self._handle, "127.0.0.1", 0, ssl=self.ctx, process_request=self._refuse,
                         max_size=None) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop

    def _refuse(self, connection: ServerConnection, request: WSRequest) -> Any:
        self.handshakes.append({k.lower(): v for k, v in request.headers.raw_items()})
        if "refuse" in request.path:
            body = json.dumps({"error": {"message": "upgrade refused", "code": "forbidden"}}).encode()
            response = connection.respond(HTTPStatus.FORBIDDEN, body.decode())
            response.headers["Content-Type"] = "application/json"
            return response
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        sent: list[str] = []
        received: list[str] = []
        self.sent.append(sent)
        self.received.append(received)
        path = connection.request.path if connection.request else ""
        try:
            async for raw in connection:
                text = raw if isinstance(raw, str) else raw.decode()
                received.append(text)
                obj = json.loads(text)
                if obj.get("type") not in REQUESTS:
                    continue
                for message in self.script(obj, path):
                    if message == "CLOSE":
                        await connection.close(1011, "scripted close")
                        return
                    if message == "DROP":
                        connection.transport.close()
                        return
                    data = message if isinstance(message, str) else json.dumps(message, ensure_ascii=False)
                    sent.append(data)
                    await connection.send(data)
        except Exception:  # the client or the proxy went away: the test sees it
            return
