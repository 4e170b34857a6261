"""Generic providers: every decoded frame becomes a `frame` event, nothing is interpreted."""

from __future__ import annotations

from typing import Any

from proxy_core.payloads import Frame, Payload
from proxy_core.providers.base import Normalizer, parse_json
from proxy_core.wire.sse import ServerSentEvent


class GenericNormalizer(Normalizer):
    name = "generic"

    def on_event(self, ev: ServerSentEvent) -> list[Payload]:
        try:
            data: Any = parse_json(ev.data)
        except ValueError:
            data = ev.data
        return [Frame(ev.event, data, ev.id)]

    def on_document(self, obj: Any, at_byte: int, event: str | None = None) -> list[Payload]:
        return [Frame(event, obj, None)]


class SSEFrames(GenericNormalizer):
    name = "sse"
    framing = "sse"


class NDJSONFrames(GenericNormalizer):
    name = "ndjson"
    framing = "ndjson"


class JSONFrames(GenericNormalizer):
    name = "json"
    framing = "json"


class WebSocketFrames(GenericNormalizer):
    """`ws-json`: each text message of a WebSocket is one frame (pipeline/websocket.py).
    Only WebSockets are recorded on such a route; its HTTP requests pass untouched."""

    name = "ws-json"
    framing = "json"
