"""What every provider normalizer shares: wire frames in, streamtap payloads out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec

from proxy_core.payloads import DecodeError, Payload, ToolCall, Usage
from proxy_core.wire.json_stream import JsonDocument
from proxy_core.wire.sse import ServerSentEvent


@dataclass(frozen=True, slots=True)
class ProviderError(Payload):
    """An error the provider reported inside a 2xx stream: a signal from a normalizer to
    the tap, never an event. The stream ends with stream.error carrying its message."""

    type: ClassVar[str] = "provider.error"
    message: str


class Normalizer:
    """Turns decoded frames (SSE events or JSON documents) into payloads.

    Pure: no IO, no clock. `finish_reason` is read once the body has ended.
    """

    name = "base"
    # The framing this provider always uses ("sse", "ndjson", "json"), or None to go by
    # the response's content type; and how many array levels a JSON body is opened.
    framing: ClassVar[str | None] = None
    json_unwrap: ClassVar[int] = 1

    def __init__(self) -> None:
        self.finish_reason: str | None = None
        # The provider's own end marker was seen (`[DONE]`, message_stop ...): the answer
        # is whole even if the connection then breaks, as when an SDK closes early.
        self.complete = False

    def on_event(self, ev: ServerSentEvent) -> list[Payload]:
        try:
            obj = parse_json(ev.data)
        except ValueError as e:
            return [DecodeError(f"{self.name}: {ev.event} event data is not JSON ({e})", ev.at_byte)]
        return self.on_document(obj, ev.at_byte, ev.event)

    def on_json(self, doc: JsonDocument) -> list[Payload]:
        return self.on_document(doc.value, doc.at_byte)

    def on_document(self, obj: Any, at_byte: int, event: str | None = None) -> list[Payload]:
        raise NotImplementedError

    def close(self) -> list[Payload]:
        return []


class DeferredUsage:
    """Usage that the provider repeats in many chunks, reported once: the last one seen,
    when the answer finishes or the body ends."""

    def __init__(self) -> None:
        self._usage: Usage | None = None

    def update(self, usage: Usage) -> None:
        self._usage = usage

    def flush(self) -> list[Payload]:
        usage, self._usage = self._usage, None
        return [usage] if usage is not None else []


_decode_json = msgspec.json.Decoder().decode  # built once: this is per event


def parse_json(text: str) -> Any:
    """`json.loads(text)`, two to three times faster. msgspec decodes what both read
    alike, which is every valid JSON text; what it refuses (NaN and Infinity, numbers
    out of a float's range, lone surrogates, anything invalid) goes to `json.loads`
    for its exact answer or error."""
    try:
        return _decode_json(text)
    except msgspec.DecodeError:
        return json.loads(text)


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def tool_call(
    call_id: str | None, name: str | None, arguments: str | dict | None, index: int, at_byte: int, provider: str,
    server: bool = False,
) -> list[Payload]:
    """A ToolCall from argument text that is complete; a DecodeError beside it if that
    text is not a JSON object (the raw text is kept, never dropped)."""
    if isinstance(arguments, dict):
        return [ToolCall(call_id, name, arguments, index, server=server)]
    text = arguments or ""
    if not text.strip():
        return [ToolCall(call_id, name, {}, index, server=server)]
    try:
        parsed = json.loads(text)
    except ValueError as e:
        parsed, problem = None, f"not JSON ({e})"
    else:
        problem = "" if isinstance(parsed, dict) else f"a JSON {type(parsed).__name__}, not an object"
    if problem:
        return [
            DecodeError(f"{provider}: arguments of tool call {call_id or name!r} are {problem}", at_byte),
            ToolCall(call_id, name, {}, index, raw_arguments=text, server=server),
        ]
    return [ToolCall(call_id, name, parsed, index, server=server)]


def error_message(obj: Any) -> str | None:
    """The message of a provider's error object: {"error": {"message": ...}} and kin."""
    if isinstance(obj, list) and obj:
        obj = obj[0]
    if not isinstance(obj, dict):
        return None
    err = obj.get("error")
    if isinstance(err, dict):
        msg = err.get("message") or err.get("status") or err.get("type")
        return str(msg) if msg else json.dumps(err)
    if isinstance(err, str):
        return err
    if obj.get("type") == "error" and isinstance(obj.get("message"), str):
        return obj["message"]
    return None
