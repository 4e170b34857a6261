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

from typing import TYPE_CHECKING

from mitmproxy import ctx, http

from proxy_core.config import defaults
from proxy_core.hub.hub import Hub
from proxy_core.hub.taps import WebSocketTaps
from proxy_core.mitm.flowinfo import request_info, response_info
from proxy_core.mitm.routing import PROVIDER

if TYPE_CHECKING:
    from proxy_core.mitm.decoder_process import DecoderProcess, RemoteWebSocketTaps

CONNECTION = "streamtap.connection"  # in flow.metadata: the connection id its answers share


class WebSocketCapture:
    """Taps every routed WebSocket: here, or in the decoder process when it runs."""

    def __init__(self, hub: Hub, decoder: DecoderProcess | None = None) -> None:
        self.hub = hub
        self.taps = WebSocketTaps(hub)
        self.decoder = decoder
        self.max_event_bytes = defaults.MAX_EVENT_BYTES

    @property
    def _taps(self) -> WebSocketTaps | RemoteWebSocketTaps:
        if self.decoder is not None and self.decoder.active:
            return self.decoder.websockets
        return self.taps

    def configure(self, updated: set[str]) -> None:
        if "streamtap_max_event_bytes" in updated:  # StreamCapture's option, checked there
            self.max_event_bytes = ctx.options.streamtap_max_event_bytes

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        provider = flow.metadata.get(PROVIDER)
        if provider is None or flow.response is None:
            return  # not routed: relayed untouched, not recorded
        model = flow.request.query.get("model") or flow.response.headers.get("openai-model")
        flow.metadata[CONNECTION] = flow.id
        # The upgrade's GET, which has no body; each answer adds what its request says.
        self._taps.start(flow.id, provider, request_info(flow, provider), response_info(flow.response), model,
                         self.max_event_bytes, flow.id)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        ws = flow.websocket
        if ws is None or not ws.messages:
            return
        taps = self._taps
        if flow.id in taps:
            message = ws.messages[-1]
            taps.message(flow.id, message.from_client, message.content, message.is_text)
        # Bounded memory, routed or not: the relay only uses its own reference to the
        # message; the newest stays for any addon after this one that reads messages[-1].
        del ws.messages[:-1]

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        ws = flow.websocket
        if ws is None:
            self._taps.end(flow.id, None, None, None)
        else:
            self._taps.end(flow.id, ws.closed_by_client, ws.close_code, ws.close_reason or "")

    def done(self) -> None:
        self.taps.shutdown()  # in the decoder process, its own WebSocketCapture does this
