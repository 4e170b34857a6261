"""A real HTTPS server on loopback that plays a provider: it answers each request with a
scripted reply, sent in the chunks the test chooses (HTTP/1.1 via h11, TLS via ssl). Given
a WebSocket script it also takes WebSocket upgrades on the same port, as one host that
serves both does (chatgpt.com for Codex signed in with ChatGPT)."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import h11
from websockets.datastructures import Headers
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request as WSRequest
from websockets.server import ServerProtocol

from tests.support.pki import TestPKI
from tests.support.ws_upstream import REQUESTS, Script


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=lambda: [("content-type", "text/event-stream")])
    chunks: list[bytes] = field(default_factory=list)
    delay: float = 0.0  # between chunks, so they cross the network one by one
    abort_after: int | None = None  # close the connection after this many chunks
    pause_after: int | None = None  # go quiet after this many chunks ...
    pause: float = 0.0  # ... for this long


class Upstream:
    def __init__(self, pki: TestPKI, handler: Callable[[Request], Reply], websocket: Script | None = None) -> None:
        self.handler = handler
        self.websocket = websocket
        self.requests: list[Request] = []  # WebSocket upgrades too
        self.ws_sent: list[list[str]] = []  # per WebSocket connection, every message sent
        self.ws_received: list[list[str]] = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pki.leaf_cert, pki.leaf_key)
        self.ctx.set_alpn_protocols(["http/1.1"])
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._closed = False

    def __enter__(self) -> Upstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        # shutdown() wakes the thread blocked in accept(); a bare close() would leave
        # it listening on a descriptor that is gone, and a later test's port with it.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._closed:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(raw,), daemon=True).start()

    def _connection(self, raw: socket.socket) -> None:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            with self.ctx.wrap_socket(raw, server_side=True) as tls:
                conn = h11.Connection(h11.SERVER)
                while self._exchange(tls, conn):
                    conn.start_next_cycle()
        except (OSError, ssl.SSLError, h11.ProtocolError):
            pass

    def _exchange(self, tls: ssl.SSLSocket, conn: h11.Connection) -> bool:
        request: h11.Request | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = tls.recv(65536)
                conn.receive_data(data)
                if not data and conn.their_state is h11.IDLE:
                    return False
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                return False
        assert request is not None
        req = Request(
            request.method.decode(),
            request.target.decode(),
            {k.decode().lower(): v.decode() for k, v in request.headers},
            body,
        )
        self.requests.append(req)
        if self.websocket is not None and req.headers.get("upgrade", "").lower() == "websocket":
            self._websocket(tls, req, conn.trailing_data[0])
            return False
        reply = self.handler(req)
        headers = list(reply.headers)
        if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
            headers.append(("transfer-encoding", "chunked"))
        tls.sendall(conn.send(h11.Response(status_code=reply.status, headers=headers)))
        for i, chunk in enumerate(reply.chunks):
            if reply.abort_after is not None and i >= reply.abort_after:
                tls.close()
                return False
            if reply.delay and i:
                time.sleep(reply.delay)
            if reply.pause_after is not None and i == reply.pause_after:
                time.sleep(reply.pause)
            tls.sendall(conn.send(h11.Data(data=chunk)))
        tls.sendall(conn.send(h11.EndOfMessage()))
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    def _websocket(self, tls: ssl.SSLSocket, req: Request, early: bytes) -> None:
        """The upgraded connection: websockets' sans-I/O protocol does the handshake,
        permessage-deflate, framing, pings and the close; each client request (a
        response.create) gets the script's messages, as WebSocketUpstream sends them."""
        assert self.websocket is not None
        proto = ServerProtocol(extensions=[ServerPerMessageDeflateFactory()], max_size=None)
        # The protocol parses the request itself: give it back what h11 read.
        proto.receive_data(WSRequest(req.target, Headers(list(req.headers.items()))).serialize())
        (handshake,) = proto.events_received()
        assert isinstance(handshake, WSRequest)
        proto.send_response(proto.accept(handshake))
        sent: list[str] = []
        received: list[str] = []
        self.ws_sent.append(sent)
        self.ws_received.append(received)
        data, parts = early, []
        while True:
            if data:
                proto.receive_data(data)
            for frame in proto.events_received():
                if not isinstance(frame, Frame) or frame.opcode not in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                    continue
                parts.append(bytes(frame.data))
                if not frame.fin:
                    continue
                text = b"".join(parts).decode()
                parts = []
                received.append(text)
                obj = json.loads(text)
                if obj.get("type") in REQUESTS:
                    for message in self.websocket(obj, req.target):
                        out = message if isinstance(message, str) else json.dumps(message, ensure_ascii=False)
                        sent.append(out)
                        proto.send_text(out.encode())
            for out_bytes in proto.data_to_send():
                if not out_bytes:  # the protocol is done with the connection
                    return
                tls.sendall(out_bytes)
            data = tls.recv(65536)
            if not data:
                return
