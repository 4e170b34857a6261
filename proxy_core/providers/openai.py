"""OpenAI: chat completions (streamed chunks or one completion) and the Responses API.

Chat completions stream `chat.completion.chunk` objects as SSE `data:` lines and end
with `data: [DONE]`. Tool calls arrive as fragments keyed by choice and tool index;
a call is emitted once its choice has a finish_reason (or at the end of the body).
The Responses API names each SSE event (`response.output_text.delta` ...); its
function calls are emitted from `response.output_item.done`, which carries them whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy_core.payloads import Payload, ReasoningDelta, TextDelta, Usage
from proxy_core.providers.base import Normalizer, ProviderError, as_int, error_message, tool_call
from proxy_core.wire.sse import ServerSentEvent


@dataclass(slots=True)
class _PendingCall:
    id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)


class OpenAINormalizer(Normalizer):
    name = "openai"

    def __init__(self) -> None:
        super().__init__()
        # (choice index, tool index or id) -> call being assembled, in arrival order.
        self._calls: dict[tuple[int, int | str], _PendingCall] = {}
        self._finish: dict[int, str] = {}
        self._emitted_items: set[str] = set()
        # Responses API function calls begun (output_item.added) and not yet done.
        self._items: dict[str, _PendingCall] = {}
        self._last_at = 0

    def on_event(self, ev: ServerSentEvent) -> list[Payload]:
        self._last_at = ev.at_byte
        if ev.data.strip() == "[DONE]":
            self.complete = True
            return []
        return super().on_event(ev)

    def on_document(self, obj: Any, at_byte: int, event: str | None = None) -> list[Payload]:
        self._last_at = at_byte
        if not isinstance(obj, dict):
            return [ProviderError(f"openai: unexpected {type(obj).__name__} in stream")]
        kind = obj.get("type")
        if isinstance(kind, str) and kind.startswith(("response.", "error")):
            return self._responses_event(kind, obj, at_byte)
        if "error" in obj:
            return [ProviderError(error_message(obj) or "error")]
        return self._chat_chunk(obj, at_byte)

    def close(self) -> list[Payload]:
        """The body ended: calls still being assembled are complete as far as they go."""
        out: list[Payload] = []
        for choice in sorted({c for c, _ in self._calls}):
            out += self._flush_calls(choice, self._last_at)
        for key, pending in list(self._items.items()):
            out += self._function_call(key, pending.id, pending.name, "".join(pending.arguments), self._last_at)
        self._items.clear()
        return out

    # Chat completions ------------------------------------------------------------

    def _chat_chunk(self, obj: dict[str, Any], at_byte: int) -> list[Payload]:
        out: list[Payload] = []
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            index = as_int(choice.get("index")) or 0
            # A streamed chunk has `delta`; a whole completion (stream=false) `message`.
            delta = choice.get("delta") or choice.get("message") or {}
            if isinstance(delta, dict):
                self._chat_delta(index, delta, out)
                if "message" in choice:
                    out += self._flush_calls(index, at_byte)
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                self._finish.setdefault(index, reason)
                if self.finish_reason is None or index == 0:
                    self.finish_reason = self._finish.get(0, reason)
                out += self._flush_calls(index, at_byte)
        usage = obj.get("usage")
        if isinstance(usage, dict):
            out.append(
                Usage(
                    as_int(usage.get("prompt_tokens")),
                    as_int(usage.get("completion_tokens")),
                    as_int(usage.get("total_tokens")),
                )
            )
        return out

    def _chat_delta(self, index: int, delta: dict[str, Any], out: list[Payload]) -> None:
        """Appends the text of one choice's delta to `out`; tool call fragments are kept."""
        # `reasoning_content` and `reasoning` are sent by OpenAI-compatible servers
        # (DeepSeek, vLLM, OpenRouter) that stream reasoning through this format.
        for key in ("reasoning_content", "reasoning"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                out.append(ReasoningDelta(text, index))
        content = delta.get("content")
        if isinstance(content, str) and content:
            out.append(TextDelta(content, index))
        fragments = delta.get("tool_calls")
        if fragments:
            self._tool_call_fragments(index, fragments)

    def _tool_call_fragments(self, index: int, fragments: Any) -> None:
        for position, fragment in enumerate(fragments):
            if not isinstance(fragment, dict):
                continue
            key = self._call_key(index, position, fragment)
            call = self._calls.setdefault(key, _PendingCall())
            call.id = call.id or fragment.get("id")
            function = fragment.get("function") or {}
            if isinstance(function, dict):
                call.name = call.name or function.get("name")
                arguments = function.get("arguments")
                if isinstance(arguments, str):
                    call.arguments.append(arguments)

    def _call_key(self, choice: int, position: int, fragment: dict[str, Any]) -> tuple[int, int | str]:
        """Fragments carry `index`; some OpenAI-compatible servers leave it out and send
        each call whole with its own `id`: then the id tells calls apart."""
        tool_index = as_int(fragment.get("index"))
        if tool_index is not None:
            return (choice, tool_index)
        call_id = fragment.get("id")
        if isinstance(call_id, str) and call_id:
            return (choice, call_id)
        mine = [k for k in self._calls if k[0] == choice]
        return mine[-1] if mine else (choice, position)

    def _flush_calls(self, choice: int, at_byte: int) -> list[Payload]:
        out: list[Payload] = []
        for key in [k for k in self._calls if k[0] == choice]:  # in arrival order
            call = self._calls.pop(key)
            out += tool_call(call.id, call.name, "".join(call.arguments), choice, at_byte, self.name)
        return out

    # Responses API -------------------------------------------------------------

    def _responses_event(self, kind: str, obj: dict[str, Any], at_byte: int) -> list[Payload]:
        if kind == "response.output_text.delta":
            return _text(TextDelta, obj.get("delta"))
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            return _text(ReasoningDelta, obj.get("delta"))
        if kind == "response.output_item.added":
            item = obj.get("item") or {}
            if item.get("type") == "function_call":
                key = item.get("id") or f"output-{obj.get('output_index')}"
                self._items[key] = _PendingCall(item.get("call_id") or item.get("id"), item.get("name"))
            return []
        if kind == "response.function_call_arguments.delta":
            pending = self._items.get(obj.get("item_id") or f"output-{obj.get('output_index')}")
            if pending is not None and isinstance(obj.get("delta"), str):
                pending.arguments.append(obj["delta"])
            return []
        if kind == "response.output_item.done":
            item = obj.get("item") or {}
            if item.get("type") != "function_call":
                return []
            key = item.get("id") or f"output-{obj.get('output_index')}"
            self._items.pop(key, None)
            return self._function_call(key, item.get("call_id") or item.get("id"), item.get("name"),
                                       item.get("arguments"), at_byte)
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            return self._responses_final(obj.get("response") or {})
        if kind == "error" or kind == "response.error":
            return [ProviderError(obj.get("message") or error_message(obj) or "error")]
        return []

    def _function_call(
        self, key: str, call_id: str | None, name: str | None, arguments: Any, at_byte: int
    ) -> list[Payload]:
        if key in self._emitted_items:
            return []
        self._emitted_items.add(key)
        return tool_call(call_id, name, arguments, 0, at_byte, self.name)

    def _responses_final(self, response: dict[str, Any]) -> list[Payload]:
        out: list[Payload] = []
        usage = response.get("usage")
        if isinstance(usage, dict):
            out.append(
                Usage(
                    as_int(usage.get("input_tokens")),
                    as_int(usage.get("output_tokens")),
                    as_int(usage.get("total_tokens")),
                )
            )
        details = response.get("incomplete_details") or {}
        self.finish_reason = details.get("reason") or response.get("status") or self.finish_reason
        self.complete = True
        if response.get("status") == "failed":
            out.append(ProviderError(error_message(response) or "response failed"))
        return out


def _text(kind: type[TextDelta] | type[ReasoningDelta], delta: Any) -> list[Payload]:
    return [kind(delta, 0)] if isinstance(delta, str) and delta else []
