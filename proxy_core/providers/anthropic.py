"""Anthropic Messages: named SSE events, content blocks addressed by index; or one whole
Message (stream: false) with the same blocks.

https://docs.anthropic.com/en/docs/build-with-claude/streaming — text_delta and
thinking_delta become text and reasoning; a tool_use (or server_tool_use, mcp_tool_use)
block's input arrives as input_json_delta fragments and is emitted whole at its
content_block_stop; signature_delta and redacted_thinking become `signature`;
citations_delta and a text block's citations become `citation`; the `*_tool_result`
blocks of server tools (web search, web fetch, code execution, MCP) become
`tool_result`; message_delta carries stop_reason and the output usage. An event, block
or delta type not known here becomes a `provider.event` with its JSON.
"""

from __future__ import annotations

from typing import Any

from proxy_core.payloads import (
    Citation,
    Payload,
    ProviderEvent,
    ReasoningDelta,
    Signature,
    TextDelta,
    ToolResult,
    Usage,
)
from proxy_core.providers.base import Normalizer, ProviderError, as_int, error_message, tool_call

CALL_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
# Events that carry nothing an event of ours would hold.
QUIET_EVENTS = frozenset({"ping"})


def is_tool_result(kind: Any) -> bool:
    return isinstance(kind, str) and kind.endswith("tool_result")


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
            return self._block_start(obj, at_byte)
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
        if kind in QUIET_EVENTS:
            return []
        return [ProviderEvent(str(kind), obj)]

    def close(self) -> list[Payload]:
        out: list[Payload] = []
        for index in sorted(self._blocks):
            out += self._block_stop(index, 0)
        return out

    def _block_start(self, obj: dict[str, Any], at_byte: int) -> list[Payload]:
        block = obj.get("content_block") or {}
        index = as_int(obj.get("index")) or 0
        kind = block.get("type") if isinstance(block, dict) else None
        if kind in CALL_BLOCKS:
            start_input = block.get("input")
            self._blocks[index] = {
                "id": block.get("id"),
                "name": block.get("name"),
                "parts": [],
                "input": start_input if isinstance(start_input, dict) and start_input else None,
                "server": kind != "tool_use",
            }
            return []
        if kind in ("text", "thinking", "redacted_thinking") or is_tool_result(kind):
            # Whatever the block already holds is the same as in a whole message.
            return self._block(block, at_byte)
        return [ProviderEvent(f"content_block.{kind}", obj)]

    def _block_delta(self, obj: dict[str, Any]) -> list[Payload]:
        delta = obj.get("delta") or {}
        kind = delta.get("type")
        index = as_int(obj.get("index")) or 0
        if kind == "text_delta" and isinstance(delta.get("text"), str):
            return [TextDelta(delta["text"], 0)] if delta["text"] else []
        if kind == "thinking_delta" and isinstance(delta.get("thinking"), str):
            return [ReasoningDelta(delta["thinking"], 0)] if delta["thinking"] else []
        if kind == "input_json_delta":
            block = self._blocks.get(index)
            if block is not None and isinstance(delta.get("partial_json"), str):
                block["parts"].append(delta["partial_json"])
                return []
        elif kind == "signature_delta" and isinstance(delta.get("signature"), str):
            return [Signature("signature", delta["signature"], 0)] if delta["signature"] else []
        elif kind == "citations_delta" and isinstance(delta.get("citation"), dict):
            return [Citation(_citation_kind(delta["citation"]), delta["citation"], 0)]
        # A delta type not known here, or a delta of a block not known here (compaction ...).
        return [ProviderEvent(f"content_block_delta.{kind}", obj)]

    def _block_stop(self, index: int, at_byte: int) -> list[Payload]:
        block = self._blocks.pop(index, None)
        if block is None:
            return []
        arguments = "".join(block["parts"]) if block["parts"] else (block["input"] or {})
        return tool_call(block["id"], block["name"], arguments, 0, at_byte, self.name, server=block["server"])

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

    def _block(self, block: dict[str, Any], at_byte: int) -> list[Payload]:
        """The payloads of one whole content block (a Message's, or a block's start)."""
        kind = block.get("type")
        out: list[Payload] = []
        if kind == "text":
            if isinstance(block.get("text"), str) and block["text"]:
                out.append(TextDelta(block["text"], 0))
            for citation in block.get("citations") or ():
                if isinstance(citation, dict):
                    out.append(Citation(_citation_kind(citation), citation, 0))
        elif kind == "thinking":
            if isinstance(block.get("thinking"), str) and block["thinking"]:
                out.append(ReasoningDelta(block["thinking"], 0))
            if isinstance(block.get("signature"), str) and block["signature"]:
                out.append(Signature("signature", block["signature"], 0))
        elif kind == "redacted_thinking":
            if isinstance(block.get("data"), str):
                out.append(Signature("redacted_thinking", block["data"], 0))
        elif kind in CALL_BLOCKS:
            out += tool_call(block.get("id"), block.get("name"), block.get("input") or {}, 0, at_byte, self.name,
                             server=kind != "tool_use")
        elif is_tool_result(kind):
            out.append(ToolResult(block.get("tool_use_id"), str(kind), block.get("content"), 0))
        else:
            out.append(ProviderEvent(f"content_block.{kind}", block))
        return out

    def _whole_message(self, obj: dict[str, Any], at_byte: int) -> list[Payload]:
        out: list[Payload] = []
        for block in obj.get("content") or ():
            if isinstance(block, dict):
                out += self._block(block, at_byte)
        if isinstance(obj.get("stop_reason"), str):
            self.finish_reason = obj["stop_reason"]
        if isinstance(obj.get("usage"), dict):
            out.append(self._usage(obj["usage"]))
        self.complete = True
        return out


def _citation_kind(citation: dict[str, Any]) -> str:
    kind = citation.get("type")
    return kind if isinstance(kind, str) else "citation"
