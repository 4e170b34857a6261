"""The events streamtap emits, and their JSON form.

Decoders and normalizers produce *payloads* (the dataclasses below, without stream,
seq or offset). The hub wraps each payload in an `Envelope` that carries where it
belongs: hub-wide `offset`, `stream` id, per-stream `seq`, and `time`. docs/events.md
documents every field.
"""

from __future__ import annotations

import functools
import json
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
        return {name: getattr(self, name) for name in _field_names(type(self))}


@dataclass(frozen=True, slots=True)
class StreamStart(Payload):
    type: ClassVar[str] = "stream.start"
    request: dict[str, Any]
    response: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TextDelta(Payload):
    type: ClassVar[str] = "text.delta"
    text: str
    index: int = 0


@dataclass(frozen=True, slots=True)
class ReasoningDelta(Payload):
    type: ClassVar[str] = "reasoning.delta"
    text: str
    index: int = 0


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

    def fields(self) -> dict[str, Any]:
        out = {"id": self.id, "name": self.name, "arguments": self.arguments, "index": self.index}
        if self.raw_arguments is not None:
            out["raw_arguments"] = self.raw_arguments
        return out


@dataclass(frozen=True, slots=True)
class Usage(Payload):
    type: ClassVar[str] = "usage"
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None


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
class ProviderError(Payload):
    """An error the provider reported inside a 2xx stream.

    Not emitted as such: the stream ends with stream.error carrying this message.
    """

    type: ClassVar[str] = "provider.error"
    message: str


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


@dataclass(frozen=True, slots=True)
class Envelope:
    """A payload placed in the hub: the unit subscribers receive."""

    offset: int
    stream: str
    seq: int
    time: float
    payload: Payload
    host: str = ""  # for filtering; not part of the JSON form
    json: bytes = field(repr=False, compare=False, default=b"")

    @property
    def type(self) -> str:
        return self.payload.type

    def to_dict(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "stream": self.stream,
            "seq": self.seq,
            "type": self.payload.type,
            "time": self.time,
            **self.payload.fields(),
        }

    @classmethod
    def make(
        cls, offset: int, stream: str, seq: int, time: float, payload: Payload, host: str = ""
    ) -> Envelope:
        env = cls(offset, stream, seq, time, payload, host)
        # Encoded once here; every subscriber shares the bytes.
        object.__setattr__(env, "json", dumps(env.to_dict()))
        return env


PAYLOADS: dict[str, type[Payload]] = {
    cls.type: cls
    for cls in (StreamStart, TextDelta, ReasoningDelta, ToolCall, Usage, Frame, DecodeError, StreamStall,
                StreamEnd, StreamAbort, StreamError)
}


def payload_from_dict(event: dict[str, Any]) -> Payload:
    """The payload of an event in its JSON form (as the API sends it, or a capture holds it)."""
    cls = PAYLOADS.get(event.get("type", ""))
    if cls is None:
        raise ValueError(f"not a stream event: {event.get('type')!r}")
    return cls(**{f.name: event[f.name] for f in fields(cls) if f.name in event})


def gap_event(first_lost: int, last_lost: int, time: float) -> dict[str, Any]:
    """The notice a subscriber gets when offsets it asked for are no longer buffered.

    Its offset is the last one lost, so resuming from it continues without a hole.
    """
    return {
        "offset": last_lost,
        "stream": None,
        "seq": None,
        "type": "gap",
        "time": time,
        "from": first_lost,
        "to": last_lost,
    }


def cutoff_event(resume_from: int, lag: int, time: float) -> dict[str, Any]:
    """The last thing a reader that fell too far behind receives before being cut off.

    Its offset is the last one delivered: resuming from it (since= or Last-Event-ID)
    continues exactly where the reader stopped.
    """
    return {
        "offset": resume_from,
        "stream": None,
        "seq": None,
        "type": "cutoff",
        "time": time,
        "resume_from": resume_from,
        "lag": lag,
        "message": f"reader fell {lag} events behind; reconnect with since={resume_from}",
    }


def restart_event(asked: int, newest: int, instance: str, time: float) -> dict[str, Any]:
    """For a reader asking for an offset this process never gave out: it knew an earlier
    run. The events of this run follow from its start."""
    return {
        "offset": 0,
        "stream": None,
        "seq": None,
        "type": "restart",
        "time": time,
        "instance": instance,
        "last_offset_seen": asked,
        "message": f"offset {asked} is beyond this process's newest ({newest}): streamtap restarted; "
        "its events follow from the start",
    }


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # built once: this is per event


def dumps(obj: Any) -> bytes:
    return _ENCODER.encode(obj).encode()
