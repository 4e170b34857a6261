"""Google AI Studio's web app (MakerSuiteService GenerateContent).

The body is one JSON array, `[[event, event, ...], error?]`, in Google's positional
array encoding of the Gemini API's messages (each field at its number minus one,
trailing nulls dropped). The reader hands us each event whole, with its path:

    event     = [candidates, prompt_feedback, usage, ...]
    candidate = [content, is_output (1 answer; 2 thinking?), finish_reason (enum number), ...]
    content   = [[part, part, ...], "model"]
    part      = [null, text]                      answer text
              = [null, text, ..., thought=1 at 12] reasoning (any longer text part)
              = [..., function_call at 10]        a tool call: [name, args, id?]
    usage     = [prompt_tokens, candidate_tokens, total_tokens, ...]
    error     = [code, message, details]          the body's second element

Function-call arguments are protobuf Struct values: [key, value] pairs, where a value's
length says its type: 1 null, 2 number at [1], 3 string at [2], 4 bool at [3] (1 is
true), 5 object at [4], 6 array at [5]. Everything is read by position from parsed
JSON, never by matching the raw bytes. Positions as read by wgd-ng/HAGMI
models/aistudio.py (commits e001a276, 036fd674) and demkom58/suiteproxy; docs/formats.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from proxy_core.payloads import Payload, ReasoningDelta, TextDelta, Usage
from proxy_core.providers.base import DeferredUsage, Normalizer, ProviderError, as_int, tool_call
from proxy_core.wire.json_stream import JsonDocument

# google.ai.generativelanguage FinishReason, by number.
FINISH_REASONS = {
    0: "FINISH_REASON_UNSPECIFIED", 1: "STOP", 2: "MAX_TOKENS", 3: "SAFETY", 4: "RECITATION",
    5: "OTHER", 6: "BLOCKLIST", 7: "PROHIBITED_CONTENT", 8: "SPII", 9: "MALFORMED_FUNCTION_CALL",
    10: "IMAGE_SAFETY", 11: "UNEXPECTED_TOOL_CALL", 12: "TOO_MANY_TOOL_CALLS",
}
BLOCK_REASONS = {1: "SAFETY", 2: "OTHER", 3: "BLOCKLIST", 4: "PROHIBITED_CONTENT", 5: "IMAGE_SAFETY"}

FINISH = 2  # candidate[2]
FUNCTION_CALL = 10
THOUGHT = 12


class AIStudioNormalizer(Normalizer):
    name = "aistudio"
    framing = "json"
    json_unwrap = 2  # [[event, event, ...], error]

    def __init__(self) -> None:
        super().__init__()
        self._calls_seen: set[str] = set()
        self._usage = DeferredUsage()
        self._error_code: Any = None

    def on_json(self, doc: JsonDocument) -> list[Payload]:
        # The body's second element is an error, [code, message, details], read piecewise.
        if len(doc.path) == 2 and doc.path[0] >= 1 and not isinstance(doc.value, list):
            return self._error_piece(doc.path[1], doc.value)
        return self.on_document(doc.value, doc.at_byte)

    def on_document(self, obj: Any, at_byte: int, event: str | None = None) -> list[Payload]:
        if not isinstance(obj, list):
            return []
        out: list[Payload] = []
        finished = False
        for index, candidate, content in _candidates(obj):
            for part in content[0]:
                out += self._part(part, index, at_byte)
            # candidate[1] is not the finish reason: HAGMI reads it as "isOutput" (1 an
            # answer, 2 thinking?) in every chunk; the finish reason is candidate[2].
            reason_code = candidate[FINISH] if candidate is not None and len(candidate) > FINISH else None
            if isinstance(reason_code, (int, str)) and not isinstance(reason_code, bool) and reason_code:
                reason = (FINISH_REASONS.get(reason_code, str(reason_code)) if isinstance(reason_code, int)
                          else reason_code)
                if self.finish_reason is None or index == 0:
                    self.finish_reason = reason
                finished = True
        if _is_event(obj):
            feedback = obj[1] if len(obj) > 1 and isinstance(obj[1], list) else None
            if feedback and isinstance(feedback[0], int) and feedback[0]:
                self.finish_reason = self.finish_reason or BLOCK_REASONS.get(feedback[0], str(feedback[0]))
                finished = True
            if len(obj) > 2 and isinstance(obj[2], list):
                counts = obj[2] + [None] * 3
                self._usage.update(Usage(as_int(counts[0]), as_int(counts[1]), as_int(counts[2])))
        if finished:
            self.complete = True
            out += self._usage.flush()
        return out

    def close(self) -> list[Payload]:
        return self._usage.flush()

    def _part(self, part: Any, index: int, at_byte: int) -> list[Payload]:
        if not isinstance(part, list) or len(part) < 2:
            return []
        if len(part) > FUNCTION_CALL and isinstance(part[FUNCTION_CALL], list):
            return self._function_call(part[FUNCTION_CALL], index, at_byte)
        text = part[1]
        if not isinstance(text, str) or not text:
            return []  # e.g. a part that only carries a thought signature
        if len(part) == 2:
            return [TextDelta(text, index)]
        if len(part) > THOUGHT and not part[THOUGHT]:
            return [TextDelta(text, index)]  # flags present, and it is not a thought
        return [ReasoningDelta(text, index)]

    def _function_call(self, call: list[Any], index: int, at_byte: int) -> list[Payload]:
        name = call[0] if call and isinstance(call[0], str) else None
        args = struct_value(call[1]) if len(call) > 1 else {}
        call_id = call[2] if len(call) > 2 and isinstance(call[2], str) else None
        # The format may send the same call again in a later chunk: report it once.
        key = json.dumps([name, args], sort_keys=True)
        if key in self._calls_seen:
            return []
        self._calls_seen.add(key)
        return tool_call(call_id, name, args, index, at_byte, self.name)

    def _error_piece(self, position: int, value: Any) -> list[Payload]:
        if position == 0:
            self._error_code = value
            return []
        if position == 1 and isinstance(value, str):
            code = f" (code {self._error_code})" if self._error_code is not None else ""
            return [ProviderError(f"{value}{code}")]
        return []


def _is_event(obj: list[Any]) -> bool:
    """[candidates, ...] where each candidate is [content, ...]."""
    return (
        bool(obj)
        and isinstance(obj[0], list)
        and all(isinstance(c, list) and c and _is_content(c[0]) for c in obj[0])
    )


def _candidates(obj: list[Any]) -> Iterator[tuple[int, list[Any] | None, list[Any]]]:
    """(candidate index, candidate, content) for each piece of output in `obj`: by
    position in an event, else found by shape wherever it is nested (a body nested one
    level more or less than expected still yields its text). Never looks inside a
    content's parts, so text or arguments that resemble the format stay what they are."""
    if _is_event(obj):
        for index, candidate in enumerate(obj[0]):
            yield index, candidate, candidate[0]
        return
    stack: list[tuple[Any, list[Any] | None, int]] = [(obj, None, 0)]
    while stack:
        node, parent, depth = stack.pop()
        if _is_content(node):
            candidate = parent if parent is not None and parent and parent[0] is node else None
            yield 0, candidate, node
        elif isinstance(node, list) and depth < 12:
            stack.extend((child, node, depth + 1) for child in reversed(node) if isinstance(child, list))


def _is_content(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) >= 2
        and value[1] == "model"
        and isinstance(value[0], list)
    )


def typed_value(value: Any) -> Any:
    """A protobuf Value in positional form: its length says which field is set."""
    if not isinstance(value, list) or not value:
        return None
    kind = len(value)
    if kind == 2:
        return value[1]
    if kind == 3:
        return value[2]
    if kind == 4:
        return value[3] in (1, True)
    if kind == 5:
        return struct_value(value[4])
    if kind == 6:
        return [typed_value(v) for v in _list_items(value[5])]
    return None


def struct_value(value: Any) -> dict[str, Any]:
    """A Struct: [[key, value], ...], possibly wrapped once more as [[[key, value], ...]]."""
    while (
        isinstance(value, list)
        and len(value) == 1
        and isinstance(value[0], list)
        and not (value[0] and isinstance(value[0][0], str))
    ):
        value = value[0]
    if not isinstance(value, list):
        return {}
    out: dict[str, Any] = {}
    for pair in value:
        if isinstance(pair, list) and pair and isinstance(pair[0], str):
            out[pair[0]] = typed_value(pair[1]) if len(pair) > 1 else None
    return out


def _list_items(value: Any) -> list[Any]:
    """A ListValue's items: [[v, v, ...]] (the message wrapper) or [v, v, ...]."""
    if not isinstance(value, list):
        return []
    if len(value) == 1 and isinstance(value[0], list) and all(isinstance(v, list) for v in value[0]):
        return value[0]
    return value
