"""Generic providers: every decoded frame becomes a `frame` event, nothing is interpreted."""

from __future__ import annotations

from typing import Any

from ..decoders.sse import ServerSentEvent
from ..events import Frame, Payload
from .base import Normalizer, parse_json


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
