"""WebSocketCapture: every answer on a routed WebSocket becomes a stream in the hub.

mitmproxy relays the messages itself (permessage-deflate included) and calls
`websocket_message` with each whole one before it forwards it: that hook must be quick
and must never raise. The pipeline (pipeline/websocket.py) says which answer each
payload belongs to; here each answer gets its stream. mitmproxy keeps every message on
the flow for the life of the connection (an hour, for Codex): all but the newest are
dropped as soon as they are decoded, so memory follows the answers in flight, not the
connection's age.
"""

from __future__ import annotations

import logging
import time

from mitmproxy import ctx, http

from proxy_core.config import defaults
from proxy_core.hub.hub import Hub, StreamRecord
from proxy_core.mitm.flowinfo import request_info, response_info
from proxy_core.mitm.routing import PROVIDER
from proxy_core.payloads import DecodeError
from proxy_core.pipeline.websocket import Answer, Out, WebSocketTap

logger = logging.getLogger(__name__)

CONNECTION = "streamtap.connection"  # in flow.metadata: the connection id its answers share


class WebSocketCapture:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._taps: dict[str, WebSocketTap] = {}  # flow.id -> the connection's pipeline
        self._streams: dict[str, dict[int, StreamRecord]] = {}  # flow.id -> answer number -> stream
        self.max_event_bytes = defaults.MAX_EVENT_BYTES

    def configure(self, updated: set[str]) -> None:
        if "streamtap_max_event_bytes" in updated:  # StreamCapture's option, checked there
            self.max_event_bytes = ctx.options.streamtap_max_event_bytes

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        provider = flow.metadata.get(PROVIDER)
        if provider is None or flow.response is None:
            return  # not routed: relayed untouched, not recorded
        model = flow.request.query.get("model") or flow.response.headers.get("openai-model")
        tap = WebSocketTap(provider, self.max_event_bytes, model)
        flow.metadata[CONNECTION] = flow.id
        self._taps[flow.id] = tap
        self._streams[flow.id] = {}
        self._publish(flow, tap.start())

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        tap = self._taps.get(flow.id)
        ws = flow.websocket
        if ws is None or not ws.messages:
            return
        if tap is None:  # not routed: not decoded, but not kept for an hour either
            del ws.messages[:-1]
            return
        started = time.perf_counter()
        message = ws.messages[-1]
        try:
            out = tap.message(message.from_client, message.content, message.is_text)
        except Exception as e:  # pragma: no cover - the tap never raises; defence in depth
            logger.exception("streamtap: WebSocket tap failed")
            out = [(a, DecodeError(f"internal error: {e!r}", tap.wire_bytes)) for a in tap.active[-1:]]
        self._publish(flow, out)
        # Bounded memory: the relay only uses its own reference to the message; the
        # newest stays for any addon after this one that reads messages[-1].
        del ws.messages[:-1]
        metrics = self.hub.metrics
        metrics.wire_bytes += len(message.content)
        metrics.body_bytes += len(message.content)
        metrics.observe_tap(time.perf_counter() - started)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        tap = self._taps.pop(flow.id, None)
        if tap is None:
            return
        ws = flow.websocket
        if ws is None:
            out = tap.close(None, None)
        else:
            out = tap.close(ws.closed_by_client, ws.close_code, ws.close_reason or "")
        self._publish(flow, out)
        self._streams.pop(flow.id, None)

    def done(self) -> None:
        for flow_id, tap in list(self._taps.items()):
            self._publish_to(flow_id, None, tap.abort("proxy", "streamtap shut down"))
        self._taps.clear()
        self._streams.clear()

    # ---------------------------------------------------------------------------

    def _publish(self, flow: http.HTTPFlow, out: list[Out]) -> None:
        self._publish_to(flow.id, flow, out)

    def _publish_to(self, flow_id: str, flow: http.HTTPFlow | None, out: list[Out]) -> None:
        if not out:
            return
        streams = self._streams.get(flow_id)
        if streams is None:
            return
        hub = self.hub
        for answer, payload in out:
            if payload is None:
                if flow is not None:
                    streams[answer.number] = self._open(flow, answer)
                continue
            record = streams.get(answer.number)
            if record is None:
                continue
            hub.publish(record.id, payload)
            if payload.terminal:
                del streams[answer.number]
        if hub.listeners:
            hub.deliver()

    def _open(self, flow: http.HTTPFlow, answer: Answer) -> StreamRecord:
        provider = flow.metadata.get(PROVIDER, "")
        request = request_info(flow, provider)  # the upgrade's GET, which has no body
        # Beside the HTTP request summary's model and stream: what the client's request
        # (response.create) says, never its prompt; a warm-up says `warmup: true`.
        request.update((k, v) for k, v in answer.summary.items() if k != "type")
        request["answer"] = answer.number  # 0, 1, 2 ... on its connection
        assert flow.response is not None
        return self.hub.open_stream(request, response_info(flow.response),
                                    transport="websocket", connection=flow.metadata.get(CONNECTION, flow.id))
