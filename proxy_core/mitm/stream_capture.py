"""StreamCapture: tap every routed response and publish its events to the hub."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.utils import asyncio_utils

from proxy_core.config import checks, defaults
from proxy_core.config.checks import ConfigError
from proxy_core.hub.hub import Hub, StreamRecord
from proxy_core.mitm.flowinfo import aborted_by, request_info, response_info
from proxy_core.mitm.routing import PROVIDER
from proxy_core.payloads import DecodeError, StreamAbort, StreamError, StreamStall
from proxy_core.pipeline.coalesce import Coalescer
from proxy_core.pipeline.tap import StreamTap
from proxy_core.pipeline.websocket import WEBSOCKET_ONLY

logger = logging.getLogger(__name__)

# flow.metadata is saved, copied and pickled with the flow: only plain data goes there.
# The live tap stays in StreamCapture, keyed by flow.id, until the flow ends.
STREAM_ID = "streamtap.stream"


class FlowTap:
    """The callable mitmproxy streams the response body through.

    Returns every chunk unchanged, at once, and never raises: an exception here would
    break mitmproxy's handler for the connection and leave the client hanging. The
    chunk is decoded at once, or a moment later with others when a Coalescer is given
    (see coalesce.py); the end of the body and an abort decode what waits first.
    """

    def __init__(self, hub: Hub, record: StreamRecord, tap: StreamTap, coalescer: Coalescer | None = None) -> None:
        self.hub = hub
        self.record = record
        self.tap = tap
        self.finished = False
        self.last_bytes = time.perf_counter()  # one clock for stalls, coalescing and tap timing
        self.stalled = False
        self._pending: list[bytes] = []
        self._coalescer = coalescer

    def __call__(self, chunk: bytes) -> bytes:
        now = self.last_bytes = time.perf_counter()
        self.stalled = False
        if not chunk:
            self.finish()
        elif not self.finished:
            self._pending.append(chunk)
            if self._coalescer is None:
                self.decode_pending()
            else:
                self._coalescer.add(self, now)
        return chunk

    def decode_pending(self) -> None:
        """Decode and publish the chunks waiting, as one batch. Handing the events to
        the API readers is the caller's (the Coalescer does it once for all streams)."""
        if not self._pending:
            return
        started = time.perf_counter()  # its own clock: a run decodes several streams in turn
        pending, self._pending = self._pending, []
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        body_before = self.tap.body_bytes
        try:
            self.publish(self.tap.feed(data), deliver=False)
        except Exception as e:  # pragma: no cover - defence in depth
            logger.exception("streamtap: tap failed for stream %s", self.record.id)
            self.publish([DecodeError(f"internal error: {e!r}", self.tap.wire_bytes)], deliver=False)
        metrics = self.hub.metrics
        metrics.wire_bytes += len(data)
        metrics.body_bytes += self.tap.body_bytes - body_before
        metrics.observe_tap(time.perf_counter() - started)

    def finish(self) -> None:
        """The body ended: flush the decoders and publish the terminal event."""
        if self.finished:
            return
        self._decode_now()
        self.finished = True
        try:
            self.publish(self.tap.close())
        finally:  # whatever happened, the stream gets its one terminal event
            self.publish([self.tap.outcome(self.record.next_seq + 1)])

    def check_stall(self, now: float, timeout: float) -> None:
        """Publish stream.stall once when no bytes came for `timeout` seconds."""
        idle = now - self.last_bytes
        if not self.finished and not self.stalled and idle >= timeout:
            self.stalled = True
            self.publish([StreamStall(round(idle, 3))])

    def abort(self, by: str, message: str) -> None:
        if self.finished:
            return
        self._decode_now()  # whole events that arrived before the abort still count
        if self.tap.complete or self.tap.status >= 400:
            # e.g. the openai SDK closes its connection as soon as it reads [DONE]:
            # the answer was whole, so the stream ended, it was not aborted. An error
            # answer (a refused WebSocket upgrade, say) is stream.error however it ends.
            self.finish()
            return
        self.finished = True
        # No flush: a half-received event is not an event. Everything whole has been sent.
        totals = self.tap.totals(self.record.next_seq + 1)
        self.publish([StreamAbort(by, message, totals)])

    def publish(self, payloads: list[Any], deliver: bool = True) -> None:
        hub = self.hub
        for payload in payloads:
            hub.publish(self.record.id, payload)
        if deliver and payloads and hub.listeners:
            hub.deliver()  # readers get the events now, as the client gets the bytes

    def _decode_now(self) -> None:
        if self._coalescer is not None:
            self._coalescer.discard(self)
        self.decode_pending()


class StreamCapture:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._taps: dict[str, FlowTap] = {}  # flow.id -> the tap of a response being captured
        self.coalescer = Coalescer(hub.deliver)
        self._stall_watch: asyncio.Task | None = None
        self.idle_timeout = defaults.IDLE_TIMEOUT

    def load(self, loader) -> None:
        loader.add_option(
            "streamtap_max_event_bytes",
            int,
            defaults.MAX_EVENT_BYTES,
            "Largest single decoded event; a larger one becomes a decode.error and is skipped.",
        )
        loader.add_option(
            "streamtap_decode_window",
            str,  # mitmproxy options have no float type
            str(defaults.DECODE_WINDOW),
            "Seconds a chunk may wait to be decoded with the chunks after it (0: decode every chunk at once). "
            "Larger saves CPU under load; readers lag by up to this much.",
        )
        loader.add_option(
            "streamtap_idle_timeout",
            str,  # mitmproxy options have no float type
            str(defaults.IDLE_TIMEOUT),
            "Seconds without bytes after which an active stream gets a stream.stall event.",
        )

    def configure(self, updated: set[str]) -> None:
        try:
            if "streamtap_max_event_bytes" in updated:
                checks.max_event_bytes("streamtap_max_event_bytes", ctx.options.streamtap_max_event_bytes)
            if "streamtap_decode_window" in updated:
                self.coalescer.window = checks.decode_window("streamtap_decode_window",
                                                             ctx.options.streamtap_decode_window)
            if "streamtap_idle_timeout" in updated:
                self.idle_timeout = checks.seconds("streamtap_idle_timeout", ctx.options.streamtap_idle_timeout)
        except ConfigError as e:
            raise exceptions.OptionsError(str(e)) from None

    def running(self) -> None:
        self._stall_watch = asyncio_utils.create_task(
            self._watch_stalls(), name="streamtap stall watch", keep_ref=True
        )

    async def _watch_stalls(self) -> None:
        while True:
            timeout = self.idle_timeout
            await asyncio.sleep(min(1.0, timeout / 4))
            now = time.perf_counter()
            for flow_tap in list(self._taps.values()):
                flow_tap.check_stall(now, timeout)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        provider = flow.metadata.get(PROVIDER)
        if provider is None or flow.response is None:
            return
        response = flow.response
        upgrade = flow.request.headers.get("upgrade", "").lower() == "websocket"
        if response.status_code == 101 or (provider in WEBSOCKET_ONLY and not upgrade):
            return  # a WebSocket's answers are streams (websocket_capture.py), its handshake is not
        record = self.hub.open_stream(request_info(flow, provider), response_info(response))
        tap = StreamTap(
            provider,
            response.status_code,
            response.headers.get("content-type"),
            response.headers.get("content-encoding"),
            ctx.options.streamtap_max_event_bytes,
        )
        flow_tap = FlowTap(self.hub, record, tap, self.coalescer)
        flow.metadata[STREAM_ID] = record.id
        self._taps[flow.id] = flow_tap
        response.stream = flow_tap

    def response(self, flow: http.HTTPFlow) -> None:
        # Normally done by the final b"" chunk; this covers bodies that never streamed.
        if (flow_tap := self._taps.pop(flow.id, None)) is not None:
            flow_tap.finish()

    def error(self, flow: http.HTTPFlow) -> None:
        flow_tap = self._taps.pop(flow.id, None)
        if flow.error is None:
            return
        message = flow.error.msg
        if flow_tap is not None:
            flow_tap.abort(aborted_by(message), message)
        elif flow.response is None and (provider := flow.metadata.get(PROVIDER)) is not None \
                and aborted_by(message) == "upstream":
            # The upstream never answered (refused, TLS verification, DNS): mitmproxy
            # gives the client a 502, and the user sees here why.
            self._no_answer(flow, provider, message)

    def _no_answer(self, flow: http.HTTPFlow, provider: str, message: str) -> None:
        response = {"status": 502, "headers": {}, "content_type": None, "content_encoding": None}
        record = self.hub.open_stream(request_info(flow, provider), response)
        flow.metadata[STREAM_ID] = record.id
        self.hub.publish(record.id, StreamError(502, f"no answer from the upstream: {message}"))
        self.hub.deliver()

    def done(self) -> None:
        if self._stall_watch is not None:
            self._stall_watch.cancel()
        for flow_tap in list(self._taps.values()):
            flow_tap.abort("proxy", "streamtap shut down")
        self._taps.clear()


