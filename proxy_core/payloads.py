"""The payloads: what normalizers produce, the data of the event schema.

A payload has no stream, seq or offset: the hub wraps each in an `Envelope`
(hub/envelope.py) that says where it belongs. docs/events.md documents every field.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


@dataclass(frozen=True, slots=True)
class Payload:
    type: ClassVar[str] = ""
    terminal: ClassVar[bool] = False

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _field_names(type(self))}  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class StreamStart(Payload):
    """`transport`: "http", or "websocket" for an answer on a WebSocket, whose
    `connection` (the same for every answer on that WebSocket) is then set."""

    type: ClassVar[str] = "stream.start"
    request: dict[str, Any]
    response: dict[str, Any]
    transport: str = "http"
    connection: str | None = None
    instance: str = ""  # the streamtap process (its hub): with the stream id, unique across a fleet


@dataclass(frozen=True, slots=True)
class TextDelta(Payload):
    type: ClassVar[str] = "text.delta"
    text: str
    index: int = 0

    def fields(self) -> dict[str, Any]:  # nearly every event: a third of the generic one's cost
        return {"text": self.text, "index": self.index}


@dataclass(frozen=True, slots=True)
class ReasoningDelta(Payload):
    type: ClassVar[str] = "reasoning.delta"
    text: str
    index: int = 0

    fields = TextDelta.fields


@dataclass(frozen=True, slots=True)
class ToolCall(Payload):
    """A complete tool call; `arguments` is the parsed JSON object.

    When the provider's argument text is not a JSON object, `arguments` is {} and
    `raw_arguments` holds the text as sent (a decode.error says why).
    """

    type: ClassVar[str] = "tool_call"
    id: str | None
    name: str | None
    arguments: dict[str, Any]
    index: int = 0
    raw_arguments: str | None = None
    server: bool = False  # run by the provider itself (server_tool_use, executableCode): not the client's to run

    def fields(self) -> dict[str, Any]:
        out = {"id": self.id, "name": self.name, "arguments": self.arguments, "index": self.index}
        if self.raw_arguments is not None:
            out["raw_arguments"] = self.raw_arguments
        if self.server:
            out["server"] = True
        return out


@dataclass(frozen=True, slots=True)
class Usage(Payload):
    type: ClassVar[str] = "usage"
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class RefusalDelta(Payload):
    """Text the model wrote to refuse (OpenAI's `refusal`), kept apart from the answer."""

    type: ClassVar[str] = "refusal.delta"
    text: str
    index: int = 0


@dataclass(frozen=True, slots=True)
class ToolResult(Payload):
    """The result of a tool the provider ran itself (web search, web fetch, code
    execution, MCP ...): `kind` is the provider's block or item type, `content` its JSON
    as sent (bounded by the event size limit), `id` the call it answers."""

    type: ClassVar[str] = "tool_result"
    id: str | None
    kind: str
    content: Any
    index: int = 0


@dataclass(frozen=True, slots=True)
class Citation(Payload):
    """A source the answer cites (Anthropic citations, Responses annotations, Gemini
    grounding and citation metadata): the provider's JSON, under its `kind`."""

    type: ClassVar[str] = "citation"
    kind: str
    data: Any
    index: int = 0


@dataclass(frozen=True, slots=True)
class Signature(Payload):
    """An opaque blob a client must send back with the conversation (a thinking block's
    signature, redacted thinking, Gemini's thoughtSignature, encrypted reasoning); never
    part of the text or reasoning."""

    type: ClassVar[str] = "signature"
    kind: str
    value: str
    index: int = 0


@dataclass(frozen=True, slots=True)
class Media(Payload):
    """Media in the answer (an inline image or audio, a file reference): counted, never
    stored. `size` is the decoded size in bytes of inline data, null for a reference."""

    type: ClassVar[str] = "media"
    kind: str
    mime_type: str | None
    size: int | None
    uri: str | None = None
    index: int = 0


@dataclass(frozen=True, slots=True)
class ProviderEvent(Payload):
    """A provider event, block, part or item the normalizer does not know: its type and
    its JSON as sent, so nothing is dropped silently."""

    type: ClassVar[str] = "provider.event"
    provider_type: str
    data: Any


@dataclass(frozen=True, slots=True)
class Frame(Payload):
    """A decoded frame with no richer mapping (generic providers, unknown kinds)."""

    type: ClassVar[str] = "frame"
    event: str | None
    data: Any
    id: str | None = None


@dataclass(frozen=True, slots=True)
class DecodeError(Payload):
    """Something in the stream could not be decoded; the stream itself goes on."""

    type: ClassVar[str] = "decode.error"
    message: str
    at_byte: int


@dataclass(frozen=True, slots=True)
class StreamStall(Payload):
    type: ClassVar[str] = "stream.stall"
    idle: float


@dataclass(frozen=True, slots=True)
class StreamEnd(Payload):
    type: ClassVar[str] = "stream.end"
    terminal: ClassVar[bool] = True
    status: int
    finish_reason: str | None
    totals: dict[str, int]
    text_sha256: str


@dataclass(frozen=True, slots=True)
class StreamAbort(Payload):
    type: ClassVar[str] = "stream.abort"
    terminal: ClassVar[bool] = True
    by: str
    message: str
    totals: dict[str, int]


@dataclass(frozen=True, slots=True)
class StreamError(Payload):
    type: ClassVar[str] = "stream.error"
    terminal: ClassVar[bool] = True
    status: int
    message: str
    totals: dict[str, int] = field(default_factory=dict)


PAYLOADS: dict[str, type[Payload]] = {
    cls.type: cls
    for cls in (StreamStart, TextDelta, ReasoningDelta, ToolCall, Usage, RefusalDelta, ToolResult, Citation,
                Signature, Media, ProviderEvent, Frame, DecodeError, StreamStall, StreamEnd, StreamAbort, StreamError)
}


def payload_from_dict(event: dict[str, Any]) -> Payload:
    """The payload of an event in its JSON form (as the API sends it, or a capture holds it)."""
    cls = PAYLOADS.get(event.get("type", ""))
    if cls is None:
        raise ValueError(f"not a stream event: {event.get('type')!r}")
    return cls(**{f.name: event[f.name] for f in fields(cls) if f.name in event})
