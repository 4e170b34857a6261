"""Gemini API (generateContent / streamGenerateContent), and the Code Assist backend
that wraps the same answer in `response`.

Each document is a GenerateContentResponse, whether it came as SSE `data:` (alt=sse),
as an element of the streamed JSON array, or as the whole body of generateContent.
https://ai.google.dev/api/generate-content
Parts with `thought: true` are reasoning; `functionCall` parts arrive whole;
`thoughtSignature` becomes a `signature`; `executableCode` a server-run tool_call and
`codeExecutionResult` its tool_result; `inlineData` / `fileData` are `media` (counted,
never stored); a candidate's `groundingMetadata`, `citationMetadata` and
`urlContextMetadata` are `citation`s. A part of a kind not known here becomes a
`provider.event`. `usageMetadata` is repeated in many chunks: it is reported once, from
the last chunk that carries it, when a finishReason arrives or the body ends.

Code Assist (cloudcode-pa.googleapis.com, Gemini CLI with a Google login,
`/v1internal:streamGenerateContent?alt=sse` and `/v1internal:generateContent`): each
document is `{"response": <GenerateContentResponse>, "traceId": ..., "consumedCredits":
...}` (gemini-cli packages/core/src/code_assist/converter.ts); a document without
`response` is an answer with no candidates.
"""

from __future__ import annotations

from typing import Any

from proxy_core.payloads import (
    Citation,
    Media,
    Payload,
    ProviderEvent,
    ReasoningDelta,
    Signature,
    TextDelta,
    ToolCall,
    ToolResult,
    Usage,
)
from proxy_core.providers.base import (
    DeferredUsage,
    Normalizer,
    ProviderError,
    as_int,
    error_message,
    tool_call,
)

# Keys of a part that say something about the part rather than hold its content.
PART_METADATA = frozenset({"thought", "thoughtSignature", "videoMetadata", "partMetadata", "mediaResolution"})
PART_CONTENT = frozenset({"text", "functionCall", "executableCode", "codeExecutionResult", "inlineData", "fileData"})
CANDIDATE_CITATIONS = ("groundingMetadata", "citationMetadata", "urlContextMetadata")


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
            return [ProviderError(f"{self.name}: unexpected {type(obj).__name__} in stream")]
        if "error" in obj:
            return [ProviderError(error_message(obj) or "error")]
        return self._answer(obj, at_byte)

    def _answer(self, obj: dict[str, Any], at_byte: int) -> list[Payload]:
        out: list[Payload] = []
        finished = False
        for candidate in obj.get("candidates") or ():
            if not isinstance(candidate, dict):
                continue
            index = as_int(candidate.get("index")) or 0
            for part in (candidate.get("content") or {}).get("parts") or ():
                out += self._part(part, index, at_byte)
            for key in CANDIDATE_CITATIONS:
                if candidate.get(key):
                    out.append(Citation(key, candidate[key], index))
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
            return [ProviderEvent("part", part)]
        out: list[Payload] = []
        text = part.get("text")
        if isinstance(text, str) and text:
            out.append(ReasoningDelta(text, index) if part.get("thought") is True else TextDelta(text, index))
        call = part.get("functionCall")
        if isinstance(call, dict):
            args = call.get("args")
            out += tool_call(call.get("id"), call.get("name"), args if isinstance(args, dict) else {}, index,
                             at_byte, self.name)
        code = part.get("executableCode")
        if isinstance(code, dict):
            out.append(_server_call("code_execution", code, index))
        result = part.get("codeExecutionResult")
        if isinstance(result, dict):
            out.append(ToolResult(None, "codeExecutionResult", result, index))
        for key in ("inlineData", "fileData"):
            media = part.get(key)
            if isinstance(media, dict):
                out.append(_media(key, media, index))
        signature = part.get("thoughtSignature")
        if isinstance(signature, str) and signature:
            out.append(Signature("thoughtSignature", signature, index))
        unknown = [k for k in part if k not in PART_CONTENT and k not in PART_METADATA]
        if unknown:
            out.append(ProviderEvent(f"part.{unknown[0]}", part))
        return out


class CodeAssistNormalizer(GeminiNormalizer):
    """Gemini CLI's Code Assist backend: the Gemini answer wrapped in `response`."""

    name = "codeassist"

    def on_document(self, obj: Any, at_byte: int, event: str | None = None) -> list[Payload]:
        if isinstance(obj, dict) and "error" not in obj:
            inner = obj.get("response")
            return super().on_document(inner if isinstance(inner, dict) else {}, at_byte, event)
        return super().on_document(obj, at_byte, event)


def _server_call(name: str, arguments: dict[str, Any], index: int) -> Payload:
    return ToolCall(None, name, arguments, index, server=True)


def _media(key: str, media: dict[str, Any], index: int) -> Media:
    mime = media.get("mimeType")
    data = media.get("data")
    size = None
    if isinstance(data, str):  # base64: 4 characters for 3 bytes, less the padding
        size = len(data) * 3 // 4 - data.endswith("=") - data.endswith("==")
    uri = media.get("fileUri")
    return Media(key, mime if isinstance(mime, str) else None, size, uri if isinstance(uri, str) else None, index)
