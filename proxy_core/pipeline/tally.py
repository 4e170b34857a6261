"""What one answer added up to so far: the totals and the text hash its terminal event
carries, and the provider's in-stream error. Shared by the HTTP tap and the WebSocket
pipeline, which count the same payloads the same way."""

from __future__ import annotations

import hashlib

from proxy_core.payloads import Payload, ReasoningDelta, TextDelta, ToolCall
from proxy_core.providers.base import ProviderError


class AnswerTally:
    def __init__(self) -> None:
        self.text_chars = 0
        self.reasoning_chars = 0
        self.tool_calls = 0
        self.provider_error: str | None = None
        self._text_hash = hashlib.sha256()

    def tally(self, payloads: list[Payload], out: list[Payload]) -> list[Payload]:
        """Adds `payloads` to the totals and to `out` (a provider error only to the totals)."""
        for p in payloads:
            if isinstance(p, TextDelta):
                self.text_chars += len(p.text)
                self._text_hash.update(p.text.encode("utf-8", "surrogatepass"))
            elif isinstance(p, ReasoningDelta):
                self.reasoning_chars += len(p.text)
            elif isinstance(p, ToolCall):
                self.tool_calls += 1
            elif isinstance(p, ProviderError):
                self.provider_error = self.provider_error or p.message
                continue  # reported by the terminal stream.error
            out.append(p)
        return out

    def text_sha256(self) -> str:
        return self._text_hash.hexdigest()
