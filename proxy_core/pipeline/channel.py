"""The decoder process's channel: what the proxy hands it, framed on a socket, sans-IO.

Every frame is a 9-byte header, (length, kind, key) little-endian, then `length`
bytes. A body chunk or a WebSocket message goes as it is, keyed by the number the
proxy gave its flow; everything else (a stream opening, ending, the options) is a
CONTROL frame holding one msgpack array, `[op, *args]`. Frames are read back in the
order they were written, whatever the socket's reads split them into.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

HEADER = struct.Struct("<IBI")
CONTROL, CHUNK = 0, 1
WS_MESSAGE = 0x10  # | FROM_CLIENT | IS_TEXT
FROM_CLIENT, IS_TEXT = 2, 1
MAX_FRAME = 1 << 30  # beyond any chunk or message mitmproxy hands an addon

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


class ChannelError(Exception):
    """The bytes are not frames of this channel: the peer is not ours, or broke."""


def control(op: str, *args: Any) -> bytes:
    try:
        body = _encode([op, *args])
    except (OverflowError, TypeError, msgspec.EncodeError):  # a client's 10**30 in a request summary
        body = _encode(_plain([op, *args]))
    return HEADER.pack(len(body), CONTROL, 0) + body


def _plain(value: Any) -> Any:
    """`value` with what msgpack cannot hold written as its repr: never raise on the proxy's path."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | bool | float | bytes):
        return value
    if isinstance(value, int) and -(2**63) <= value < 2**64:
        return value
    return repr(value)


def chunk_header(key: int, length: int) -> bytes:
    return HEADER.pack(length, CHUNK, key)


def ws_header(key: int, length: int, from_client: bool, is_text: bool) -> bytes:
    return HEADER.pack(length, WS_MESSAGE | (FROM_CLIENT if from_client else 0) | (IS_TEXT if is_text else 0), key)


def decode_control(body: bytes) -> list[Any]:
    try:
        message = _decode(body)
    except msgspec.DecodeError as e:
        raise ChannelError(f"a control frame is not msgpack: {e}") from None
    if not isinstance(message, list) or not message or not isinstance(message[0], str):
        raise ChannelError("a control frame is not [op, ...]")
    return message


class ChannelReader:
    """feed(bytes) -> the whole frames they complete, as (kind, key, body)."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        buffer = self._buffer
        if not buffer and len(data) >= HEADER.size:
            view: bytes | bytearray = data  # the usual case: read whole frames straight from the read
        else:
            buffer += data
            view = buffer
        frames = []
        at, end, size = 0, len(view), HEADER.size
        while end - at >= size:
            length, kind, key = HEADER.unpack_from(view, at)
            if length > self._max_frame:
                raise ChannelError(f"a frame of {length} bytes (at most {self._max_frame})")
            if end - at - size < length:
                break
            frames.append((kind, key, bytes(view[at + size : at + size + length])))
            at += size + length
        if view is buffer:
            del buffer[:at]
        else:
            buffer += memoryview(data)[at:]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of a frame not yet whole."""
        return len(self._buffer)
