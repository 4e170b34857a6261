"""claude.ai's web app (POST /api/organizations/{org}/chat_conversations/{id}/completion).

SSE in the Anthropic Messages style (providers/anthropic.py), plus the app's own
(docs/formats.md names the sources):

- `conversation_ready` and `message_limit` {type: within_limit | approaching_limit |
  exceeded_limit, resetsAt, ...} become `provider.event`s (provider_type the event's type), never text.
- Thinking blocks may carry `thinking_delta` (reasoning), only `thinking_summary_delta`
  (`{"summary": {"summary": "..."}}`, each a whole summary line: a `provider.event`
  `thinking_summary`, not reasoning), or nothing at all.
- `tool_result` blocks sit between text blocks; their content arrives as
  `input_json_delta` inside the block and is reported at the block's end as one
  `tool_result` event (its JSON when it parses, else the text), never as text.
- The app's own delta kinds (`citation_start_delta`, `citation_end_delta`,
  `tool_use_block_update_delta`) carry no text: each is a `provider.event`
  (`content_block_delta.<kind>`), as is any delta kind not known here.
- The older `completion` events (`{"completion": "<text>", "stop_reason": ...}`).
- An `error` event ends the answer with stream.error: its type and message, and when
  the message is itself JSON (a rate limit), the limit's kind and reset time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from proxy_core.payloads import DecodeError, Payload, ProviderEvent, TextDelta, ToolResult
from proxy_core.providers.anthropic import AnthropicNormalizer
from proxy_core.providers.base import ProviderError, as_int, parse_json
from proxy_core.providers.chatgpt_web import RAW_LIMIT, scrub
from proxy_core.wire.sse import ServerSentEvent

# The app's own delta kinds, none of them text: reported as provider.event, scrubbed.
APP_DELTAS = {"citation_start_delta", "citation_end_delta", "tool_use_block_update_delta"}


def limit_message(error: dict[str, Any]) -> str:
    """An error's text: `type: message`, with a rate limit's kind and reset time spelt out."""
    kind = error.get("type")
    message = error.get("message")
    inner: Any = None
    if isinstance(message, str) and message.lstrip().startswith("{"):
        try:
            inner = json.loads(message)
        except ValueError:
            inner = None
    if isinstance(inner, dict):
        parts = [str(inner.get("type") or "limit")]
        resets = inner.get("resetsAt") or inner.get("resets_at")
        if isinstance(resets, (int, float)) and not isinstance(resets, bool):
            when = datetime.fromtimestamp(resets, UTC).isoformat().replace("+00:00", "Z")
            parts.append(f"resets at {when}")
        message = ", ".join(parts)
    text = ": ".join(str(x) for x in (kind, message) if x)
    return text or "error"


class ClaudeWebNormalizer(AnthropicNormalizer):
    name = "claude_web"
    framing = None  # SSE as sent; a JSON body (an error, a legacy answer) by its content type

    def __init__(self) -> None:
        super().__init__()
        self._results: dict[int, dict[str, Any]] = {}  # open tool_result blocks

    def on_event(self, ev: ServerSentEvent) -> list[Payload]:
        try:
            obj = parse_json(ev.data)
        except ValueError as e:  # reported with the start of the raw data, so that it can be reported on
            raw = json.dumps(ev.data[:RAW_LIMIT] + ("..." if len(ev.data) > RAW_LIMIT else ""), ensure_ascii=False)
            return [DecodeError(f"claude_web: {ev.event} event data is not JSON ({e}): {raw}", ev.at_byte)]
        return self.on_document(obj, ev.at_byte, ev.event)

    def on_document(self, obj: Any, at_byte: int, event: str | None = None) -> list[Payload]:
        if not isinstance(obj, dict):
            return super().on_document(obj, at_byte, event)
        kind = obj.get("type") or event
        if kind == "error":
            err = obj.get("error")
            return [ProviderError(limit_message(err if isinstance(err, dict) else obj))]
        if kind == "message_limit":
            return [ProviderEvent("message_limit", scrub(obj.get("message_limit") or {}))]
        if kind == "conversation_ready":
            return [ProviderEvent("conversation_ready", scrub({k: v for k, v in obj.items() if k != "type"}))]
        if "completion" in obj and kind in ("completion", None, "message"):
            return self._completion(obj)
        if kind == "content_block_start":
            block = obj.get("content_block") or {}
            if isinstance(block, dict) and block.get("type") == "tool_result":
                self._results[as_int(obj.get("index")) or 0] = {
                    "tool_use_id": block.get("tool_use_id"), "content": block.get("content"), "parts": []}
                return []
        if kind == "content_block_delta":
            index = as_int(obj.get("index")) or 0
            delta = obj.get("delta") or {}
            dtype = delta.get("type") if isinstance(delta, dict) else None
            if index in self._results:
                if dtype == "input_json_delta" and isinstance(delta.get("partial_json"), str):
                    self._results[index]["parts"].append(delta["partial_json"])
                return []  # nothing in a tool result is answer text
            if dtype == "thinking_summary_delta":
                summary = delta.get("summary")
                text = summary.get("summary") if isinstance(summary, dict) else summary
                return [ProviderEvent("thinking_summary", {"index": index, "summary": text})]
            if dtype in APP_DELTAS:
                return [ProviderEvent(f"content_block_delta.{dtype}", scrub(obj))]
        if kind == "content_block_stop":
            index = as_int(obj.get("index")) or 0
            if index in self._results:
                return [self._result(self._results.pop(index))]
        if kind in ("message_start", "content_block_start", "content_block_delta", "content_block_stop",
                    "message_delta", "message_stop", "ping", "message"):
            return super().on_document(obj, at_byte, event)
        return [ProviderEvent(str(kind), scrub(obj))]  # an event this decoder does not know

    def close(self) -> list[Payload]:
        out: list[Payload] = [self._result(self._results.pop(i)) for i in sorted(self._results)]
        return out + super().close()

    def _completion(self, obj: dict[str, Any]) -> list[Payload]:
        if isinstance(obj.get("error"), dict):
            return [ProviderError(limit_message(obj["error"]))]
        out: list[Payload] = []
        text = obj.get("completion")
        if isinstance(text, str) and text:
            out.append(TextDelta(text, 0))
        reason = obj.get("stop_reason")
        if isinstance(reason, str):
            self.finish_reason = reason
            self.complete = True
        return out

    def _result(self, block: dict[str, Any]) -> ToolResult:
        raw = "".join(block["parts"])
        content: Any = block["content"]
        if raw:
            try:
                content = json.loads(raw)
            except ValueError:
                content = raw
        return ToolResult(block["tool_use_id"], "tool_result", content, 0)
