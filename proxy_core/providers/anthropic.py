"""Anthropic Messages: named SSE events, content blocks addressed by index.

https://docs.anthropic.com/en/docs/build-with-claude/streaming — text_delta and
thinking_delta become text and reasoning; a tool_use block's input arrives as
input_json_delta fragments and is emitted whole at its content_block_stop;
signature_delta is ignored; message_delta carries stop_reason and the output usage.
"""

from __future__ import annotations

from typing import Any

from proxy_core.payloads import Payload, ReasoningDelta, TextDelta, Usage
from proxy_core.providers.base import Normalizer, ProviderError, as_int, error_message, tool_call


class AnthropicNormalizer(Normalizer):
    name = "anthropic"

    def __init__(self) -> None:
        super().__init__()
        self._blocks: dict[int, dict[str, Any]] = {}  # open tool_use blocks
        self._input_tokens: int | None = None

    def on_document(self, obj: Any, at_byte: int, event: str | None = None) -> list[Payload]:
        if not isinstance(obj, dict):
            return [ProviderError(f"anthropic: unexpected {type(obj).__name__} in stream")]
        kind = obj.get("type") or event
        if kind == "message_start":
            usage = (obj.get("message") or {}).get("usage") or {}
            self._input_tokens = as_int(usage.get("input_tokens"))
            return []
        if kind == "content_block_start":
            return self._block_start(obj)
        if kind == "content_block_delta":
            return self._block_delta(obj)
        if kind == "content_block_stop":
            return self._block_stop(as_int(obj.get("index")) or 0, at_byte)
        if kind == "message_delta":
            return self._message_delta(obj)
        if kind == "message_stop":
            self.complete = True
            return []
        if kind == "error":
            return [ProviderError(error_message(obj) or "error")]
        if kind == "message":  # a whole message (stream=false)
            return self._whole_message(obj, at_byte)
        return []  # ping, and event types added later

    def close(self) -> list[Payload]:
        out: list[Payload] = []
        for index in sorted(self._blocks):
            out += self._block_stop(index, 0)
        return out

    def _block_start(self, obj: dict[str, Any]) -> list[Payload]:
        block = obj.get("content_block") or {}
        index = as_int(obj.get("index")) or 0
        kind = block.get("type")
        if kind in ("tool_use", "server_tool_use", "mcp_tool_use"):
            start_input = block.get("input")
            self._blocks[index] = {
                "id": block.get("id"),
                "name": block.get("name"),
                "parts": [],
                "input": start_input if isinstance(start_input, dict) and start_input else None,
            }
        elif kind == "text" and block.get("text"):
            return [TextDelta(block["text"], 0)]
        elif kind == "thinking" and block.get("thinking"):
            return [ReasoningDelta(block["thinking"], 0)]
        return []

    def _block_delta(self, obj: dict[str, Any]) -> list[Payload]:
        delta = obj.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str) and delta["text"]:
            return [TextDelta(delta["text"], 0)]
        if kind == "thinking_delta" and isinstance(delta.get("thinking"), str) and delta["thinking"]:
            return [ReasoningDelta(delta["thinking"], 0)]
        if kind == "input_json_delta":
            block = self._blocks.get(as_int(obj.get("index")) or 0)
            if block is not None and isinstance(delta.get("partial_json"), str):
                block["parts"].append(delta["partial_json"])
        return []  # signature_delta, citations_delta

    def _block_stop(self, index: int, at_byte: int) -> list[Payload]:
        block = self._blocks.pop(index, None)
        if block is None:
            return []
        arguments = "".join(block["parts"]) if block["parts"] else (block["input"] or {})
        return tool_call(block["id"], block["name"], arguments, 0, at_byte, self.name)

    def _message_delta(self, obj: dict[str, Any]) -> list[Payload]:
        reason = (obj.get("delta") or {}).get("stop_reason")
        if isinstance(reason, str):
            self.finish_reason = reason
        usage = obj.get("usage")
        if not isinstance(usage, dict):
            return []
        return [self._usage(usage)]

    def _usage(self, usage: dict[str, Any]) -> Usage:
        input_tokens = as_int(usage.get("input_tokens"))
        if input_tokens is None:
            input_tokens = self._input_tokens
        output_tokens = as_int(usage.get("output_tokens"))
        total = input_tokens + output_tokens if input_tokens is not None and output_tokens is not None else None
        return Usage(input_tokens, output_tokens, total)

    def _whole_message(self, obj: dict[str, Any], at_byte: int) -> list[Payload]:
        out: list[Payload] = []
        for block in obj.get("content") or ():
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text" and block.get("text"):
                out.append(TextDelta(block["text"], 0))
            elif kind == "thinking" and block.get("thinking"):
                out.append(ReasoningDelta(block["thinking"], 0))
            elif kind in ("tool_use", "server_tool_use"):
                out += tool_call(block.get("id"), block.get("name"), block.get("input") or {}, 0, at_byte, self.name)
        if isinstance(obj.get("stop_reason"), str):
            self.finish_reason = obj["stop_reason"]
        if isinstance(obj.get("usage"), dict):
            out.append(self._usage(obj["usage"]))
        self.complete = True
        return out
