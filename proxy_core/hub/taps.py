"""The taps of the responses and WebSocket connections being captured, by flow key.

StreamCapture and WebSocketCapture (mitm/) drive these from mitmproxy's hooks when the
proxy decodes itself; the decoder process drives the same classes from its channel
(mitm/decoder_host.py). No mitmproxy here: a flow is its key and the plain data that
mitm/flowinfo.py made of it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from proxy_core.hub.hub import Hub, StreamRecord
from proxy_core.payloads import DecodeError, StreamAbort, StreamError, StreamStall
from proxy_core.pipeline.coalesce import Coalescer
from proxy_core.pipeline.tap import StreamTap
from proxy_core.pipeline.websocket import Answer, Out, WebSocketTap

logger = logging.getLogger(__name__)


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

    @property
    def stream_id(self) -> str:
        return self.record.id

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

    def hold(self, chunk: bytes) -> None:
        """Keep `chunk` for the caller's next decode_pending (the decoder process's batch)."""
        self.last_bytes = time.perf_counter()
        self.stalled = False
        if not self.finished:
            self._pending.append(chunk)

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

    def skip(self, nbytes: int, why: str) -> None:
        """`nbytes` of the body will never be seen here (the decoder process fell
        behind): say so, and decode no more of it; the stream still ends normally."""
        self._decode_now()
        self.publish([self.tap.stop(f"{why}: {nbytes} bytes of this body were not decoded")])

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


class HttpTaps:
    """The HTTP responses being captured, by flow key, until each ends."""

    def __init__(self, hub: Hub, coalescer: Coalescer | None = None) -> None:
        self.hub = hub
        self.coalescer = coalescer
        self.taps: dict[str, FlowTap] = {}

    def open(self, key: str, request: dict[str, Any], response: dict[str, Any], provider: str,
             max_event_bytes: int, stream_id: str | None = None) -> FlowTap:
        record = self.hub.open_stream(request, response, stream_id)
        tap = StreamTap(provider, response["status"], response.get("content_type"),
                        response.get("content_encoding"), max_event_bytes)
        flow_tap = self.taps[key] = FlowTap(self.hub, record, tap, self.coalescer)
        return flow_tap

    def end(self, key: str) -> None:
        """The response is complete (normally the final b"" chunk has said so already)."""
        if (flow_tap := self.taps.pop(key, None)) is not None:
            flow_tap.finish()

    def forget(self, key: str) -> None:
        self.taps.pop(key, None)

    def abort(self, key: str, by: str, message: str) -> bool:
        """The flow failed; False when it had no tap (it never got an answer)."""
        flow_tap = self.taps.pop(key, None)
        if flow_tap is None:
            return False
        flow_tap.abort(by, message)
        return True

    def no_answer(self, request: dict[str, Any], message: str, stream_id: str | None = None) -> str:
        """The upstream never answered (refused, TLS verification, DNS): mitmproxy gives
        the client a 502, and the user sees here why."""
        response = {"status": 502, "headers": {}, "content_type": None, "content_encoding": None}
        record = self.hub.open_stream(request, response, stream_id)
        self.hub.publish(record.id, StreamError(502, f"no answer from the upstream: {message}"))
        self.hub.deliver()
        return record.id

    def check_stalls(self, timeout: float) -> None:
        now = time.perf_counter()
        for flow_tap in list(self.taps.values()):
            flow_tap.check_stall(now, timeout)

    def shutdown(self, message: str = "streamtap shut down") -> None:
        for flow_tap in list(self.taps.values()):
            flow_tap.abort("proxy", message)
        self.taps.clear()


class WebSocketTaps:
    """The routed WebSocket connections, by flow key: each answer on one is a stream."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._taps: dict[str, WebSocketTap] = {}
        self._streams: dict[str, dict[int, StreamRecord]] = {}  # flow key -> answer number -> stream
        self._opening: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {}  # request, response, connection

    def __contains__(self, key: str) -> bool:
        return key in self._taps

    def start(self, key: str, provider: str, request: dict[str, Any], response: dict[str, Any],
              model: str | None, max_event_bytes: int, connection: str) -> None:
        tap = WebSocketTap(provider, max_event_bytes, model)
        self._taps[key] = tap
        self._streams[key] = {}
        self._opening[key] = (request, response, connection)
        self._publish(key, tap.start())

    def message(self, key: str, from_client: bool, content: bytes, is_text: bool) -> None:
        tap = self._taps.get(key)
        if tap is None:
            return
        started = time.perf_counter()
        try:
            out = tap.message(from_client, content, is_text)
        except Exception as e:  # pragma: no cover - the tap never raises; defence in depth
            logger.exception("streamtap: WebSocket tap failed")
            out = [(a, DecodeError(f"internal error: {e!r}", tap.wire_bytes)) for a in tap.active[-1:]]
        self._publish(key, out)
        metrics = self.hub.metrics
        metrics.wire_bytes += len(content)
        metrics.body_bytes += len(content)
        metrics.observe_tap(time.perf_counter() - started)

    def skip(self, key: str, messages: int, nbytes: int, why: str) -> None:
        """`messages` of the connection will never be seen here (the decoder process fell behind)."""
        if (tap := self._taps.get(key)) is not None:
            self._publish(key, tap.skip(messages, nbytes, why))

    def end(self, key: str, closed_by_client: bool | None, code: int | None, reason: str | None) -> None:
        tap = self._taps.pop(key, None)
        if tap is None:
            return
        self._publish(key, tap.close(closed_by_client, code, reason or ""))
        self._streams.pop(key, None)
        self._opening.pop(key, None)

    def shutdown(self, message: str = "streamtap shut down") -> None:
        for key, tap in list(self._taps.items()):
            self._publish(key, tap.abort("proxy", message))
        self._taps.clear()
        self._streams.clear()
        self._opening.clear()

    def _publish(self, key: str, out: list[Out]) -> None:
        if not out:
            return
        streams = self._streams.get(key)
        if streams is None:
            return
        hub = self.hub
        for answer, payload in out:
            if payload is None:
                streams[answer.number] = self._open(key, answer)
                continue
            record = streams.get(answer.number)
            if record is None:
                continue
            hub.publish(record.id, payload)
            if payload.terminal:
                del streams[answer.number]
        if hub.listeners:
            hub.deliver()

    def _open(self, key: str, answer: Answer) -> StreamRecord:
        base, response, connection = self._opening[key]
        # Beside the HTTP request summary's model and stream: what the client's request
        # (response.create) says, never its prompt; a warm-up says `warmup: true`.
        request = dict(base)
        request.update((k, v) for k, v in answer.summary.items() if k != "type")
        request["answer"] = answer.number  # 0, 1, 2 ... on its connection
        return self.hub.open_stream(request, response, transport="websocket", connection=connection)
