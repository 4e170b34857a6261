"""What a decoder yields for bytes it cannot frame: the stream itself goes on. The
pipeline turns it into a `decode.error` event."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WireError:
    message: str
    at_byte: int
