"""The decoder process: the hub, the API, the sinks and the capture files, fed by the proxy.

Started by DecoderProcess (mitm/decoder_process.py) as `python -m
proxy_core.mitm.decoder_host FD LOOP`, with its end of a socket pair as FD. It runs a
mitmproxy Master with no proxy server: the same addons as the proxy (options, checks,
shutdown order), and DecoderHost, which reads the channel (pipeline/channel.py) and
drives the taps that StreamCapture and WebSocketCapture hold here. Its log records go
to the proxy, which writes them as its own. It stops when the proxy says so or when
the socket closes (the proxy died).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any

from mitmproxy import ctx, exceptions, master, options

from proxy_core.hub.hub import Hub
from proxy_core.hub.taps import FlowTap
from proxy_core.mitm.api_server import ApiServer
from proxy_core.mitm.capture_files import Captures
from proxy_core.mitm.routing import Routing
from proxy_core.mitm.sinks import Sinks
from proxy_core.mitm.stream_capture import StreamCapture
from proxy_core.mitm.websocket_capture import WebSocketCapture
from proxy_core.pipeline.channel import (
    CHUNK,
    CONTROL,
    FROM_CLIENT,
    IS_TEXT,
    WS_MESSAGE,
    ChannelError,
    ChannelReader,
    control,
    decode_control,
)

logger = logging.getLogger(__name__)


class DecoderHost:
    """Reads the proxy's frames and runs them through this process's taps, in order."""

    def __init__(self, hub: Hub, capture: StreamCapture, websockets: WebSocketCapture, api: ApiServer,
                 sock: socket.socket, reader: ChannelReader, early: list[tuple[int, int, bytes]]) -> None:
        self.hub = hub
        self.capture = capture
        self.websockets = websockets
        self.api = api
        self.sock = sock
        self.reader = reader
        self._early = early  # frames read with the options, before the loop ran
        self._flows: dict[int, FlowTap] = {}  # the proxy's flow number -> its tap here
        self._ws_keys: dict[int, str] = {}
        self.transport: asyncio.Transport | None = None
        self._stopping = False

    async def running(self) -> None:
        loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        transport, _ = await loop.create_unix_connection(lambda: _HostProtocol(self), sock=self.sock)
        self.transport = transport
        if self.api.failed:  # ApiServer runs first; it has logged why and stops this process
            self.send(control("failed", self.api.failed))
            return
        self.send(control("ready", os.getpid()))
        early, self._early = self._early, []
        self.frames(early)

    async def done(self) -> None:
        _LogToProxy.host = None
        transport = self.transport
        if transport is not None:
            for _ in range(100):  # the last log lines reach the proxy before the loop ends
                if not transport.get_write_buffer_size():
                    break
                await asyncio.sleep(0.01)
            transport.close()

    def send(self, frame: bytes) -> None:
        if self.transport is None:  # before the loop reads it: the socket still blocks, the proxy reads
            self.sock.sendall(frame)
        elif not self.transport.is_closing():
            self.transport.write(frame)

    def proxy_lost(self) -> None:
        """The channel closed without a shutdown: the proxy died. What it had sent is
        decoded; what was in flight is aborted, saying so; then this process ends in order."""
        if not self._stopping:
            self.capture.taps.shutdown("the proxy stopped")
            self.websockets.taps.shutdown("the proxy stopped")
        self._flows.clear()
        self._ws_keys.clear()
        ctx.master.shutdown()

    def frames(self, frames: list[tuple[int, int, bytes]]) -> None:
        """One read's frames: chunks are held by their taps, decoded after, delivered once."""
        touched: dict[FlowTap, None] = {}
        flows = self._flows
        for kind, key, body in frames:
            if kind == CHUNK:
                if (flow_tap := flows.get(key)) is not None:
                    flow_tap.hold(body)
                    touched[flow_tap] = None
            elif kind & WS_MESSAGE:
                self._decode(touched)  # an answer's HTTP chunks and its messages keep their order
                if (flow_id := self._ws_keys.get(key)) is not None:
                    self.websockets.taps.message(flow_id, bool(kind & FROM_CLIENT), body, bool(kind & IS_TEXT))
            elif kind == CONTROL:
                self._decode(touched)
                self.control(decode_control(body))
            else:
                raise ChannelError(f"a frame of unknown kind {kind}")
        self._decode(touched)
        if self.hub.listeners:
            self.hub.deliver()

    def _decode(self, touched: dict[FlowTap, None]) -> None:
        for flow_tap in touched:
            flow_tap.decode_pending()
        touched.clear()

    def control(self, message: list[Any]) -> None:
        op, *args = message
        taps = self.capture.taps
        if op == "open":
            number, stream_id, request, response, provider, max_event_bytes = args
            self._flows[number] = taps.open(str(number), request, response, provider, max_event_bytes, stream_id)
        elif op == "end":
            self._flows.pop(args[0], None)
            taps.end(str(args[0]))
        elif op == "abort":
            self._flows.pop(args[0], None)
            taps.abort(str(args[0]), args[1], args[2])
        elif op == "skip":
            if (flow_tap := self._flows.get(args[0])) is not None:
                flow_tap.skip(args[1], "the decoder process fell behind")
        elif op == "no_answer":
            stream_id, request, message_text = args
            taps.no_answer(request, message_text, stream_id)
        elif op == "ws_start":
            number, provider, request, response, model, max_event_bytes, connection = args
            self._ws_keys[number] = flow_id = f"ws{number}"
            self.websockets.taps.start(flow_id, provider, request, response, model, max_event_bytes, connection)
        elif op == "ws_skip":
            number, messages, nbytes = args
            if (flow_id := self._ws_keys.get(number, "")):
                self.websockets.taps.skip(flow_id, messages, nbytes, "the decoder process fell behind")
        elif op == "ws_end":
            number, closed_by_client, code, reason = args
            if (flow_id := self._ws_keys.pop(number, "")):
                self.websockets.taps.end(flow_id, closed_by_client, code, reason)
        elif op == "options":
            apply_options(args[0])
        elif op == "status":
            self.api.proxy_status = args[0]
        elif op == "shutdown":
            self._stopping = True
            ctx.master.shutdown()
        else:
            raise ChannelError(f"unknown op {op!r}")


class _HostProtocol(asyncio.Protocol):
    def __init__(self, host: DecoderHost) -> None:
        self.host = host

    def data_received(self, data: bytes) -> None:
        try:
            self.host.frames(self.host.reader.feed(data))
        except (ChannelError, ValueError, TypeError, KeyError) as e:  # a frame not as ours are: stop, saying so
            logger.error(f"streamtap: the decoder process cannot read the proxy's channel: {e}")
            ctx.master.shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self.host.proxy_lost()


class _LogToProxy(logging.Handler):
    """This process's log records, written by the proxy as its own."""

    host: DecoderHost | None = None

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        frame = control("log", record.levelno, record.name, text)
        if self.host is not None:
            self.host.send(frame)
        else:
            print(text, file=sys.stderr)  # before the loop runs: straight to the shared stderr


def apply_options(values: dict[str, Any]) -> None:
    opts = ctx.options
    known = {name: value for name, value in values.items() if name in opts}
    try:
        opts.update(**known)
    except exceptions.OptionsError as e:
        logger.error(f"streamtap: the decoder process refused an option: {e}")


def read_start(sock: socket.socket, reader: ChannelReader
               ) -> tuple[dict[str, Any], dict[str, Any], list[tuple[int, int, bytes]]]:
    """The proxy's first two frames, its options and its status, read before the loop
    runs (so the API never answers without them); and whatever came with them."""
    frames: list[tuple[int, int, bytes]] = []
    while len(frames) < 2:
        data = sock.recv(1 << 16)
        if not data:
            raise ChannelError("the proxy closed the channel before it said how it runs")
        frames += reader.feed(data)
    start: list[list[Any]] = [decode_control(body) if kind == CONTROL else [""] for kind, _, body in frames[:2]]
    if [message[0] for message in start] != ["options", "status"] or \
            not all(len(message) == 2 and isinstance(message[1], dict) for message in start):
        raise ChannelError("the first frames are not the options and the status")
    options: dict[str, Any] = start[0][1]
    status: dict[str, Any] = start[1][1]
    return options, status, frames[2:]


async def serve(sock: socket.socket) -> int:
    reader = ChannelReader()
    values, status, early = read_start(sock, reader)
    hub = Hub()
    opts = options.Options()
    host_master = master.Master(opts)
    capture, websockets, api = StreamCapture(hub), WebSocketCapture(hub), ApiServer(hub)
    api.proxy_status = status
    host = DecoderHost(hub, capture, websockets, api, sock, reader, early)
    _LogToProxy.host = host
    # The proxy's order (mitm/__init__.py): at shutdown streams are aborted, then written,
    # then readers flushed.
    host_master.addons.add(Routing(), capture, websockets, Captures(hub), Sinks(hub), api, host)
    opts.update(**{name: value for name, value in values.items() if name in opts})
    await host_master.run()
    return 1 if api.failed else 0


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the proxy decides when this process stops
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(_LogToProxy(logging.INFO))
    for noisy in ("tornado", "asyncio", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sock = socket.socket(fileno=int(argv[0]))
    loop_factory = None
    if len(argv) > 1 and argv[1] == "uvloop":
        from proxy_core.mitm.event_loop import uvloop_factory

        loop_factory = uvloop_factory()
    try:
        return asyncio.run(serve(sock), loop_factory=loop_factory)
    except (ChannelError, exceptions.OptionsError) as e:
        print(f"streamtap: decoder process: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
