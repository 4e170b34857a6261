"""Gemini API (generateContent / streamGenerateContent).

Each document is a GenerateContentResponse, whether it came as SSE `data:` (alt=sse) or
as an element of the streamed JSON array. https://ai.google.dev/api/generate-content
Parts with `thought: true` are reasoning; `functionCall` parts arrive whole.
`usageMetadata` is repeated in many chunks: it is reported once, from the last chunk
that carries it, when a finishReason arrives or the body ends.
"""

from __future__ import annotations

from typing import Any

from proxy_core.payloads import Payload, ReasoningDelta, TextDelta, Usage
from proxy_core.providers.base import DeferredUsage, Normalizer, ProviderError, as_int, error_message, tool_call


class GeminiNormalizer(Normalizer):
    name = "gemini"

    def __init__(self) -> None:
        super().__init__()
        self._usage = DeferredUsage()

    def on_document(self, obj: Any, at_byte: int, event: str | None = None) -> list[Payload]:
        if isinstance(obj, list):  # a whole array body (generateContent answers in one piece)
            out: list[Payload] = []
            for item in obj:
                out += self.on_document(item, at_byte, event)
            return out
        if not isinstance(obj, dict):
            return [ProviderError(f"gemini: unexpected {type(obj).__name__} in stream")]
        if "error" in obj:
            return [ProviderError(error_message(obj) or "error")]
        out = []
        finished = False
        for candidate in obj.get("candidates") or ():
            if not isinstance(candidate, dict):
                continue
            index = as_int(candidate.get("index")) or 0
            for part in (candidate.get("content") or {}).get("parts") or ():
                out += self._part(part, index, at_byte)
            reason = candidate.get("finishReason")
            if isinstance(reason, str) and reason:
                if self.finish_reason is None or index == 0:
                    self.finish_reason = reason
                finished = True
        block = (obj.get("promptFeedback") or {}).get("blockReason")
        if isinstance(block, str):
            self.finish_reason = self.finish_reason or block
            finished = True
        usage = obj.get("usageMetadata")
        if isinstance(usage, dict):
            self._usage.update(Usage(as_int(usage.get("promptTokenCount")), as_int(usage.get("candidatesTokenCount")),
                                     as_int(usage.get("totalTokenCount"))))
        if finished:
            self.complete = True
            out += self._usage.flush()
        return out

    def close(self) -> list[Payload]:
        return self._usage.flush()

    def _part(self, part: Any, index: int, at_byte: int) -> list[Payload]:
        if not isinstance(part, dict):
            return []
        text = part.get("text")
        if isinstance(text, str) and text:
            return [ReasoningDelta(text, index) if part.get("thought") is True else TextDelta(text, index)]
        call = part.get("functionCall")
        if isinstance(call, dict):
            args = call.get("args")
            return tool_call(call.get("id"), call.get("name"), args if isinstance(args, dict) else {}, index,
                             at_byte, self.name)
        return []
