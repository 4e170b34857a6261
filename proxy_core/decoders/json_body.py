"""A whole JSON body (a response that is not streamed), read once the body has ended."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..events import DecodeError
from .sse import DEFAULT_MAX_EVENT_BYTES


@dataclass(frozen=True, slots=True)
class JsonDocument:
    value: Any
    at_byte: int = 0


class JsonBodyDecoder:
    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._parts: list[bytes] = []
        self._size = 0
        self._too_large = False

    def feed(self, data: bytes) -> list[JsonDocument | DecodeError]:
        if self._too_large:
            return []
        self._size += len(data)
        if self._size > self.max_event_bytes:
            self._too_large, self._parts = True, []
            return [DecodeError(f"json: body larger than {self.max_event_bytes} bytes skipped", 0)]
        self._parts.append(data)
        return []

    def close(self) -> list[JsonDocument | DecodeError]:
        if self._too_large or not self._size:
            return []
        body, self._parts = b"".join(self._parts), []
        try:
            return [JsonDocument(json.loads(body))]
        except ValueError as e:
            return [DecodeError(f"json: body is not JSON ({e})", 0)]
