"""OpenAI: chat completions (streamed chunks or one completion) and the Responses API.

Chat completions stream `chat.completion.chunk` objects as SSE `data:` lines and end
with `data: [DONE]`. Tool calls arrive as fragments keyed by choice and tool index;
a call is emitted once its choice has a finish_reason (or at the end of the body).
The Responses API names each SSE event (`response.output_text.delta` ...); its
function calls are emitted from `response.output_item.done`, which carries them whole,
as are the items of server-run tools (web search, file search, code interpreter, MCP,
image generation: `tool_result`). A non-streamed Response (`"object": "response"`) has
the same items in `output`. Chatgpt.com's Codex backend speaks the same format.
Refusals become `refusal.delta`, annotations `citation`, encrypted reasoning a
`signature`; an event or item type not known here becomes a `provider.event`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy_core.payloads import (
    Citation,
    Media,
    Payload,
    ProviderEvent,
    ReasoningDelta,
    RefusalDelta,
    Signature,
    TextDelta,
    ToolCall,
    ToolResult,
    Usage,
)
from proxy_core.providers.base import Normalizer, ProviderError, as_int, error_message, tool_call
from proxy_core.wire.sse import ServerSentEvent

# Keys of a chat delta or message read below; null or empty values of others are left out.
CHAT_KEYS = frozenset({"role", "content", "refusal", "tool_calls", "function_call", "reasoning_content",
                       "reasoning", "annotations", "audio"})
PLAIN_DELTA = frozenset({"role", "content"})  # nearly every chunk: text and nothing else

# Responses events that carry nothing the deltas and `response.output_item.done` do not:
# the `.done` repeats of text already streamed, and the progress of server-run tools.
RESPONSES_QUIET = frozenset({
    "response.created", "response.in_progress", "response.queued",
    "response.content_part.added", "response.content_part.done",
    "response.output_text.done", "response.refusal.done",
    "response.reasoning_summary_part.added", "response.reasoning_summary_part.done",
    "response.reasoning_summary_text.done", "response.reasoning_text.done",
    "response.function_call_arguments.done",
    "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done",
    "response.code_interpreter_call_code.delta", "response.code_interpreter_call_code.done",
    "response.mcp_call_arguments.delta", "response.mcp_call_arguments.done",
})
SERVER_TOOL_ITEMS = frozenset({
    "web_search_call", "file_search_call", "code_interpreter_call", "image_generation_call", "mcp_call",
    "mcp_list_tools", "tool_search_call",
})
TOOL_PROGRESS = ("in_progress", "searching", "interpreting", "generating", "completed", "failed")
# Tool calls the client runs, whose arguments are not a `function_call`'s JSON string.
CLIENT_CALL_ITEMS = {"local_shell_call": "local_shell", "computer_call": "computer", "shell_call": "shell"}


def _quiet(kind: str) -> bool:
    if kind in RESPONSES_QUIET:
        return True
    _, _, rest = kind.partition("response.")
    item, _, stage = rest.partition(".")
    return item in SERVER_TOOL_ITEMS and stage in TOOL_PROGRESS


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
        if obj.get("object") == "response":  # a whole Response (stream=false)
            return self._responses_whole(obj, at_byte)
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
                    self.complete = True
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
        if delta.keys() <= PLAIN_DELTA:
            content = delta.get("content")
            if content.__class__ is str and content:
                out.append(TextDelta(content, index))
            return
        # `reasoning_content` and `reasoning` are sent by OpenAI-compatible servers
        # (DeepSeek, vLLM, OpenRouter) that stream reasoning through this format.
        for key in ("reasoning_content", "reasoning"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                out.append(ReasoningDelta(text, index))
        content = delta.get("content")
        if isinstance(content, str) and content:
            out.append(TextDelta(content, index))
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            out.append(RefusalDelta(refusal, index))
        audio = delta.get("audio")
        if isinstance(audio, dict):
            # The spoken answer's transcript is its text; the audio itself is counted.
            if isinstance(audio.get("transcript"), str) and audio["transcript"]:
                out.append(TextDelta(audio["transcript"], index))
            if isinstance(audio.get("data"), str) and audio["data"]:
                out.append(Media("audio", None, _b64_size(audio["data"]), None, index))
        for annotation in delta.get("annotations") or ():
            if isinstance(annotation, dict):
                out.append(Citation(str(annotation.get("type") or "annotation"), annotation, index))
        fragments = delta.get("tool_calls")
        if fragments:
            self._tool_call_fragments(index, fragments)
        legacy = delta.get("function_call")  # the deprecated single function call
        if isinstance(legacy, dict):
            self._tool_call_fragments(index, [{"index": -1, **legacy}], legacy=True)
        for key, value in delta.items():
            if key not in CHAT_KEYS and value not in (None, "", [], {}):
                out.append(ProviderEvent(f"delta.{key}", {key: value}))

    def _tool_call_fragments(self, index: int, fragments: Any, legacy: bool = False) -> None:
        for position, fragment in enumerate(fragments):
            if not isinstance(fragment, dict):
                continue
            key = self._call_key(index, position, fragment)
            call = self._calls.setdefault(key, _PendingCall())
            call.id = call.id or fragment.get("id")
            function = fragment if legacy else fragment.get("function") or {}
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
        if kind == "response.refusal.delta":
            return _text(RefusalDelta, obj.get("delta"))
        if kind == "response.output_text.annotation.added":
            annotation = obj.get("annotation")
            if isinstance(annotation, dict):
                return [Citation(str(annotation.get("type") or "annotation"), annotation, 0)]
        elif kind == "response.output_item.added":
            item = obj.get("item") or {}
            if item.get("type") == "function_call":
                key = item.get("id") or f"output-{obj.get('output_index')}"
                self._items[key] = _PendingCall(item.get("call_id") or item.get("id"), item.get("name"))
            return []  # the item comes whole with response.output_item.done
        elif kind == "response.function_call_arguments.delta":
            pending = self._items.get(obj.get("item_id") or f"output-{obj.get('output_index')}")
            if pending is not None and isinstance(obj.get("delta"), str):
                pending.arguments.append(obj["delta"])
            return []
        elif kind == "response.output_item.done":
            item = obj.get("item")
            if isinstance(item, dict):
                return self._output_item(item, obj.get("output_index"), at_byte, whole=False)
        elif kind == "response.image_generation_call.partial_image":
            data = obj.get("partial_image_b64")
            size = _b64_size(data) if isinstance(data, str) else None
            return [Media("partial_image", _image_type(obj.get("output_format")), size, None, 0)]
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            return self._responses_final(obj.get("response") or {})
        elif kind == "error" or kind == "response.error":
            return [ProviderError(obj.get("message") or error_message(obj) or "error")]
        elif _quiet(kind):
            return []
        return [ProviderEvent(kind, obj)]

    def _responses_whole(self, response: dict[str, Any], at_byte: int) -> list[Payload]:
        out: list[Payload] = []
        for position, item in enumerate(response.get("output") or ()):
            if isinstance(item, dict):
                out += self._output_item(item, position, at_byte, whole=True)
        return out + self._responses_final(response)

    def _output_item(self, item: dict[str, Any], position: Any, at_byte: int, whole: bool) -> list[Payload]:
        """One output item, whole. Streamed, a message's and reasoning's text came as deltas."""
        kind = item.get("type")
        if kind == "function_call":
            key = item.get("id") or f"output-{position}"
            self._items.pop(key, None)
            return self._function_call(key, item.get("call_id") or item.get("id"), item.get("name"),
                                       item.get("arguments"), at_byte)
        if kind == "message":
            return self._message_item(item) if whole else []
        if kind == "reasoning":
            out: list[Payload] = []
            if whole:
                for part in (item.get("summary") or []) + (item.get("content") or []):
                    if isinstance(part, dict):
                        out += _text(ReasoningDelta, part.get("text"))
            if isinstance(item.get("encrypted_content"), str) and item["encrypted_content"]:
                out.append(Signature("encrypted_content", item["encrypted_content"], 0))
            return out
        call_id = item.get("call_id") or item.get("id")
        if kind == "custom_tool_call":
            text = item.get("input")
            return [ToolCall(call_id, item.get("name"), {}, 0, raw_arguments=text if isinstance(text, str) else "")]
        if kind in CLIENT_CALL_ITEMS:
            action = item.get("action")
            return [ToolCall(call_id, CLIENT_CALL_ITEMS[kind], action if isinstance(action, dict) else {}, 0)]
        if kind in SERVER_TOOL_ITEMS:
            content = item
            out = []
            if kind == "image_generation_call" and isinstance(item.get("result"), str):
                content = {k: v for k, v in item.items() if k != "result"}
                out.append(Media(kind, _image_type(item.get("output_format")), _b64_size(item["result"]), None, 0))
            return [ToolResult(item.get("id"), kind, content, 0), *out]
        return [ProviderEvent(f"output_item.{kind}", item)]

    def _message_item(self, item: dict[str, Any]) -> list[Payload]:
        out: list[Payload] = []
        for part in item.get("content") or ():
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "output_text":
                out += _text(TextDelta, part.get("text"))
                for annotation in part.get("annotations") or ():
                    if isinstance(annotation, dict):
                        out.append(Citation(str(annotation.get("type") or "annotation"), annotation, 0))
            elif kind == "refusal":
                out += _text(RefusalDelta, part.get("refusal"))
            else:
                out.append(ProviderEvent(f"content.{kind}", part))
        return out

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


def _b64_size(data: str) -> int:
    """The decoded size of base64 text: 3 bytes for 4 characters, less the padding."""
    return len(data) * 3 // 4 - data.endswith("=") - data.endswith("==")


def _image_type(output_format: Any) -> str | None:
    return f"image/{output_format}" if isinstance(output_format, str) and output_format else None


def _text(kind: type[TextDelta] | type[ReasoningDelta] | type[RefusalDelta], delta: Any) -> list[Payload]:
    return [kind(delta, 0)] if isinstance(delta, str) and delta else []
