"""The events streamtap emits, and their JSON form.

Decoders and normalizers produce *payloads* (the dataclasses below, without stream,
seq or offset). The hub wraps each payload in an `Envelope` that carries where it
belongs: hub-wide `offset`, `stream` id, per-stream `seq`, and `time`. docs/events.md
documents every field.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, NamedTuple


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


# The hand-written JSON of the hot payloads must be byte for byte what `dumps` gives.
# It is, for the exact types checked: `_ENCODER` quotes strings with this very
# function (the C one when available), writes an int as `int.__repr__` and a finite
# float as `float.__repr__`. A lone surrogate passes through, and `_utf8` escapes it
# as `dumps` does.
_json_str = json.encoder.encode_basestring


@dataclass(frozen=True, slots=True)
class Payload:
    type: ClassVar[str] = ""
    terminal: ClassVar[bool] = False

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _field_names(type(self))}

    def fields_json(self) -> str | None:
        """`fields()` as JSON members (`,"name":value...`), for the payloads that come
        by the thousand; None sends the envelope through the generic encoder."""
        return None


@dataclass(frozen=True, slots=True)
class StreamStart(Payload):
    type: ClassVar[str] = "stream.start"
    request: dict[str, Any]
    response: dict[str, Any]


def _delta_fields_json(self: TextDelta | ReasoningDelta) -> str | None:
    """`fields_json` of the deltas, the payloads nearly every event carries."""
    if type(self.text) is not str or type(self.index) is not int:  # e.g. a bool index, which JSON spells true
        return None
    return f',"text":{_json_str(self.text)},"index":{self.index}'


@dataclass(frozen=True, slots=True)
class TextDelta(Payload):
    type: ClassVar[str] = "text.delta"
    text: str
    index: int = 0

    fields_json = _delta_fields_json


@dataclass(frozen=True, slots=True)
class ReasoningDelta(Payload):
    type: ClassVar[str] = "reasoning.delta"
    text: str
    index: int = 0

    fields_json = _delta_fields_json


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


class Envelope(NamedTuple):
    """A payload placed in the hub: the unit subscribers receive.

    The event is kept once, as its JSON (encoded once, shared by every subscriber),
    beside the few fields readers filter on; the payload object is not kept. The ring
    then holds one flat tuple and one bytes object per event, which halves its memory
    and what the garbage collector has to walk. A tuple because one is made per event:
    a frozen dataclass costs four times as much.
    """

    offset: int
    stream: str
    seq: int
    time: float
    type: str
    terminal: bool
    host: str  # for filtering; not part of the JSON form
    json: bytes

    @property
    def payload(self) -> Payload:
        """The payload, rebuilt from the JSON: for the rare reader that wants the object."""
        return payload_from_dict(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.json)

    @classmethod
    def make(
        cls, offset: int, stream: str, seq: int, time: float, payload: Payload, host: str = ""
    ) -> Envelope:
        encoded = _fast_envelope_json(offset, stream, seq, time, payload)
        if encoded is None:
            encoded = dumps(envelope_dict(offset, stream, seq, time, payload))
        return cls(offset, stream, seq, time, payload.type, payload.terminal, host, encoded)


def envelope_dict(offset: int, stream: str, seq: int, time: float, payload: Payload) -> dict[str, Any]:
    return {
        "offset": offset,
        "stream": stream,
        "seq": seq,
        "type": payload.type,
        "time": time,
        **payload.fields(),
    }


def _fast_envelope_json(offset: Any, stream: Any, seq: Any, time: Any, payload: Payload) -> bytes | None:
    """`dumps(envelope_dict(...))` for a payload with `fields_json`, or None."""
    members = payload.fields_json()
    if members is None or not (
        type(offset) is int and type(seq) is int and type(stream) is str and type(time) is float
    ):
        return None
    if not math.isfinite(time):  # NaN and Infinity have their own spelling
        return None
    head = f'{{"offset":{offset},"stream":{_json_str(stream)},"seq":{seq},"type":{_json_str(payload.type)}'
    return _utf8(f'{head},"time":{time!r}{members}}}')


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
    return _utf8(_ENCODER.encode(obj))


def _utf8(json_text: str) -> bytes:
    # A lone surrogate (e.g. a provider's "\ud800") has no UTF-8 form; it can only sit
    # inside a JSON string, where its \uXXXX escape is the same character.
    return json_text.encode("utf-8", "backslashreplace")
