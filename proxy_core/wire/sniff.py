"""For a body whose content type says nothing useful (text/plain, octet-stream, none):
look at its first bytes, then hand everything to SSE or JSON decoding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_SSE_STARTS = (b"data:", b"event:", b"id:", b"retry:", b":")
_BOM = b"\xef\xbb\xbf"


class SniffingDecoder:
    def __init__(self, make_sse: Callable[[], Any], make_json: Callable[[], Any]) -> None:
        self._make_sse = make_sse
        self._make_json = make_json
        self._head = b""
        self._inner: Any = None

    def feed(self, data: bytes) -> list[Any]:
        if self._inner is not None:
            return self._inner.feed(data)
        self._head += data
        start = self._head.removeprefix(_BOM).lstrip()
        if len(start) < 6 and any(p.startswith(start) for p in _SSE_STARTS if len(p) > len(start)):
            return []  # could still become "data:"
        if not start:
            return []
        return self._decide(start)

    def close(self) -> list[Any]:
        out = [] if self._inner is not None else self._decide(self._head.removeprefix(_BOM).lstrip())
        return out + self._inner.close()

    def _decide(self, start: bytes) -> list[Any]:
        self._inner = self._make_sse() if start.startswith(_SSE_STARTS) else self._make_json()
        head, self._head = self._head, b""
        return self._inner.feed(head)
