"""OpenAI Realtime API events (`/v1/realtime`, over a WebSocket) to payloads.

One normalizer per answer (one `response.created` ... `response.done`). GA and beta
event names are both understood:

    response.output_text.delta | response.text.delta                        -> text.delta
    response.output_audio_transcript.delta | response.audio_transcript.delta -> text.delta
    response.output_audio.delta | response.audio.delta      -> counted (audio_bytes), never kept
    response.function_call_arguments.delta/.done, response.output_item.done -> tool_call
    response.done                                  -> usage, finish_reason, complete
"""

from __future__ import annotations

from typing import Any

from proxy_core.payloads import Payload, TextDelta, Usage
from proxy_core.providers.base import Normalizer, ProviderError, as_int, error_message, tool_call

TEXT_DELTAS = frozenset({
    "response.output_text.delta", "response.text.delta",
    "response.output_audio_transcript.delta", "response.audio_transcript.delta",
})
AUDIO_DELTAS = frozenset({"response.output_audio.delta", "response.audio.delta"})


class RealtimeNormalizer(Normalizer):
    name = "openai-realtime"

    def __init__(self) -> None:
        super().__init__()
        self.audio_bytes = 0  # decoded size of the audio deltas (base64 is 4/3 of it)
        self._arguments: dict[str, list[str]] = {}  # call_id -> argument fragments
        self._names: dict[str, str | None] = {}
        self._emitted: set[str] = set()

    def on_document(self, obj: Any, at_byte: int, event: str | None = None) -> list[Payload]:
        if not isinstance(obj, dict):
            return [ProviderError(f"openai-realtime: unexpected {type(obj).__name__} in stream")]
        kind = obj.get("type")
        if kind in TEXT_DELTAS:
            delta = obj.get("delta")
            return [TextDelta(delta, 0)] if isinstance(delta, str) and delta else []
        if kind in AUDIO_DELTAS:
            delta = obj.get("delta")
            if isinstance(delta, str):
                self.audio_bytes += len(delta) * 3 // 4 - delta.endswith("=") - delta.endswith("==")
            return []
        if kind == "response.function_call_arguments.delta":
            call_id = obj.get("call_id") or obj.get("item_id")
            if isinstance(call_id, str) and isinstance(obj.get("delta"), str):
                self._arguments.setdefault(call_id, []).append(obj["delta"])
            return []
        if kind == "response.function_call_arguments.done":
            call_id = obj.get("call_id") or obj.get("item_id")
            arguments = obj.get("arguments")
            if not isinstance(arguments, str):
                arguments = "".join(self._arguments.get(str(call_id), ()))
            return self._call(call_id, obj.get("name"), arguments, at_byte)
        if kind == "response.output_item.added":
            item = obj.get("item") or {}
            if isinstance(item, dict) and item.get("type") == "function_call" and item.get("call_id"):
                self._names[item["call_id"]] = item.get("name")
            return []
        if kind == "response.output_item.done":
            item = obj.get("item") or {}
            if isinstance(item, dict) and item.get("type") == "function_call":
                return self._call(item.get("call_id"), item.get("name"), item.get("arguments"), at_byte)
            return []
        if kind == "response.done":
            return self._done(obj.get("response") or {})
        if kind == "error":
            return [ProviderError(error_message(obj) or "error")]
        return []

    def close(self) -> list[Payload]:
        """The answer ended without its calls' `done`: they are complete as far as they go."""
        out: list[Payload] = []
        for call_id, parts in list(self._arguments.items()):
            out += self._call(call_id, self._names.get(call_id), "".join(parts), 0)
        return out

    def _call(self, call_id: Any, name: Any, arguments: Any, at_byte: int) -> list[Payload]:
        key = str(call_id)
        if key in self._emitted:
            return []
        self._emitted.add(key)
        self._arguments.pop(key, None)
        name = name if isinstance(name, str) else self._names.get(key)
        return tool_call(call_id if isinstance(call_id, str) else None, name, arguments, 0, at_byte, self.name)

    def _done(self, response: dict[str, Any]) -> list[Payload]:
        out = self.close()
        usage = response.get("usage")
        if isinstance(usage, dict):
            out.append(Usage(as_int(usage.get("input_tokens")), as_int(usage.get("output_tokens")),
                             as_int(usage.get("total_tokens"))))
        details = response.get("status_details") or {}
        reason = details.get("reason") if isinstance(details, dict) else None
        self.finish_reason = reason or response.get("status") or self.finish_reason
        self.complete = True
        if response.get("status") == "failed":
            error = details.get("error") if isinstance(details, dict) else None
            message = error_message({"error": error}) if error else None
            out.append(ProviderError(message or "response failed"))
        return out
