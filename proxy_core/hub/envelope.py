"""The envelope: a payload placed in the hub, with its offset, stream, seq and time,
encoded once as the JSON every reader receives; and the JSON encoder all of streamtap's
output goes through (`dumps`)."""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple

from proxy_core.payloads import Payload, json_str


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
    head = f'{{"offset":{offset},"stream":{json_str(stream)},"seq":{seq},"type":{json_str(payload.type)}'
    return _utf8(f'{head},"time":{time!r}{members}}}')


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # built once: this is per event


def dumps(obj: Any) -> bytes:
    return _utf8(_ENCODER.encode(obj))


def _utf8(json_text: str) -> bytes:
    # A lone surrogate (e.g. a provider's "\ud800") has no UTF-8 form; it can only sit
    # inside a JSON string, where its \uXXXX escape is the same character.
    return json_text.encode("utf-8", "backslashreplace")
