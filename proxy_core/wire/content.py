"""Incremental content decoding (Content-Encoding): identity, gzip, deflate, br, zstd.

Every decoder has the same two calls, so they stack: `decode(data) -> bytes` and
`flush() -> bytes`, where `flush` also reports a truncated body. Failures raise
`ContentDecodingError`; the caller turns that into one decode.error.
"""

from __future__ import annotations

import sys
import zlib
from typing import Protocol

import brotli

# One zstd binding, the one mitmproxy uses: the standard library's from Python 3.14,
# its backport before.
if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd


class ContentDecodingError(Exception):
    def __init__(self, message: str, partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial  # what was decoded before the failure


class ContentDecoder(Protocol):
    def decode(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class IdentityDecoder:
    def decode(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class GzipDecoder:
    """gzip, including several members one after another (RFC 1952 2.2)."""

    def __init__(self) -> None:
        self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._seen_input = False

    def decode(self, data: bytes) -> bytes:
        if not data:
            return b""
        self._seen_input = True
        out: list[bytes] = []
        try:
            # The last 8 bytes apart: a member's CRC and length trailer is checked
            # there, and a bad one must not take the text before it down with it.
            for piece in (data[:-8], data[-8:]):
                if piece:
                    self._decompress(piece, out)
        except zlib.error as e:
            raise ContentDecodingError(f"gzip: {e}", b"".join(out)) from None
        return b"".join(out)

    def _decompress(self, data: bytes, out: list[bytes]) -> None:
        out.append(self._obj.decompress(data))
        while self._obj.eof and self._obj.unused_data:
            rest = self._obj.unused_data
            self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out.append(self._obj.decompress(rest))

    def flush(self) -> bytes:
        out = self._obj.flush()
        if self._seen_input and not self._obj.eof:
            raise ContentDecodingError("gzip: body ended inside a compressed member (truncated)")
        return out


class DeflateDecoder:
    """HTTP 'deflate' is meant to be zlib-wrapped (RFC 9110 8.4.1.2), but servers send raw
    deflate too: the first two bytes tell which, as browsers and httpx do."""

    def __init__(self) -> None:
        self._obj: zlib._Decompress | None = None
        self._head = b""

    def decode(self, data: bytes) -> bytes:
        if self._obj is None:
            self._head += data
            if len(self._head) < 2:
                return b""
            data, self._head = self._head, b""
            cmf, flg = data[0], data[1]
            wrapped = (cmf & 0x0F) == 8 and ((cmf << 8) | flg) % 31 == 0
            self._obj = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        try:
            return self._obj.decompress(data)
        except zlib.error as e:
            raise ContentDecodingError(f"deflate: {e}") from None

    def flush(self) -> bytes:
        if self._obj is None:
            if self._head:
                raise ContentDecodingError("deflate: body too short")
            return b""
        out = self._obj.flush()
        if not self._obj.eof:
            raise ContentDecodingError("deflate: body ended inside the compressed stream (truncated)")
        return out


class BrotliDecoder:
    def __init__(self) -> None:
        self._obj = brotli.Decompressor()
        self._seen_input = False

    def decode(self, data: bytes) -> bytes:
        if not data:
            return b""
        self._seen_input = True
        try:
            return self._obj.process(data)
        except brotli.error as e:
            raise ContentDecodingError(f"br: {e or 'invalid data'}") from None

    def flush(self) -> bytes:
        if self._seen_input and not self._obj.is_finished():
            raise ContentDecodingError("br: body ended inside the compressed stream (truncated)")
        return b""


class ZstdDecoder:
    """zstd, including several frames one after another (RFC 8878 3)."""

    def __init__(self) -> None:
        self._obj = zstd.ZstdDecompressor()
        self._in_frame = False

    def decode(self, data: bytes) -> bytes:
        out = []
        try:
            while data:
                self._in_frame = True
                out.append(self._obj.decompress(data))
                if not self._obj.eof:
                    break
                self._in_frame = False
                data = self._obj.unused_data
                self._obj = zstd.ZstdDecompressor()
        except zstd.ZstdError as e:
            raise ContentDecodingError(f"zstd: {e}") from None
        return b"".join(out)

    def flush(self) -> bytes:
        if self._in_frame:
            raise ContentDecodingError("zstd: body ended inside a frame (truncated)")
        return b""


class StackedDecoder:
    """Several codings, undone in the reverse of the order they were applied."""

    def __init__(self, decoders: list[ContentDecoder]) -> None:
        self._decoders = decoders

    def decode(self, data: bytes) -> bytes:
        for d in self._decoders:
            data = d.decode(data)
        return data

    def flush(self) -> bytes:
        data = b""
        for d in self._decoders:
            data = d.decode(data) + d.flush()
        return data


DECODERS: dict[str, type] = {
    "identity": IdentityDecoder,
    "gzip": GzipDecoder,
    "x-gzip": GzipDecoder,
    "deflate": DeflateDecoder,
    "br": BrotliDecoder,
    "zstd": ZstdDecoder,
}


def content_decoder(content_encoding: str | None) -> ContentDecoder:
    """The decoder for a Content-Encoding header value, e.g. 'gzip' or 'gzip, br'."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    unknown = [c for c in codings if c not in DECODERS]
    if unknown:
        raise ContentDecodingError(f"unsupported content-encoding {unknown[0]!r}")
    if not codings:
        return IdentityDecoder()
    if len(codings) == 1:
        return DECODERS[codings[0]]()
    return StackedDecoder([DECODERS[c]() for c in reversed(codings)])


# Input is fed to a bounded decoding this many bytes at a time, so a decompression bomb
# overshoots the limit by at most one piece's expansion (zstd's worst, ~32768:1: 8 MiB).
_BOUNDED_PIECE = 256


def decode_bounded(data: bytes, content_encoding: str | None, limit: int) -> bytes:
    """A whole body (a request's) decoded by its Content-Encoding, at most `limit` bytes
    of it: larger raises ContentDecodingError, as does a body that does not decode."""
    decoder = content_decoder(content_encoding)
    if isinstance(decoder, IdentityDecoder):
        if len(data) > limit:
            raise ContentDecodingError(f"body larger than {limit} bytes")
        return data
    out: list[bytes] = []
    size = 0
    view = memoryview(data)
    for start in range(0, len(data), _BOUNDED_PIECE):
        piece = decoder.decode(bytes(view[start : start + _BOUNDED_PIECE]))
        size += len(piece)
        if size > limit:
            raise ContentDecodingError(f"body decodes to more than {limit} bytes")
        out.append(piece)
    out.append(decoder.flush())
    if size + len(out[-1]) > limit:
        raise ContentDecodingError(f"body decodes to more than {limit} bytes")
    return b"".join(out)
