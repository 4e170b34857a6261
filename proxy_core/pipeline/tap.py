"""The decoding pipeline of one response, top to bottom: wire bytes in, payloads out.

    wire chunk -> content decoding (gzip/deflate/br/zstd) -> framing (SSE, NDJSON or
    JSON values) -> provider normalizer -> payloads, with running totals.

Pure and total: no IO, and `feed`/`close` never raise. Any failure becomes one
DecodeError and decoding stops for this response; the proxy still forwards the bytes.
"""

from __future__ import annotations

import json
from typing import Any

from proxy_core.payloads import (
    DecodeError,
    Payload,
    StreamEnd,
    StreamError,
)
from proxy_core.pipeline.tally import AnswerTally
from proxy_core.providers import normalizer_for
from proxy_core.providers.base import Normalizer, error_message
from proxy_core.wire.content import ContentDecoder, ContentDecodingError, content_decoder
from proxy_core.wire.errors import WireError
from proxy_core.wire.json_stream import JsonDocument, JsonStreamDecoder
from proxy_core.wire.length_prefixed import LengthPrefixedDecoder
from proxy_core.wire.ndjson import NDJSONDecoder
from proxy_core.wire.sniff import SniffingDecoder
from proxy_core.wire.sse import DEFAULT_MAX_EVENT_BYTES, ServerSentEvent, SSEDecoder

ERROR_BODY_LIMIT = 64 * 1024  # of an error response, kept to find its message


NDJSON_TYPES = {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}

JSON_TYPES = {"application/json", "application/json+protobuf"}

Framing = SSEDecoder | NDJSONDecoder | JsonStreamDecoder | SniffingDecoder | LengthPrefixedDecoder


def framing_for(normalizer: Normalizer, content_type: str | None, max_event_bytes: int) -> Framing:
    """The provider's own framing if it has one (aistudio, generic routes), else the
    content type's: SSE, NDJSON, or JSON values (one body or a streamed array). A type
    that says nothing (text/plain, none at all) is settled by the body's first bytes."""
    media = (content_type or "").split(";")[0].strip().lower()

    def sse() -> SSEDecoder:
        return SSEDecoder(max_event_bytes)

    def json_values() -> JsonStreamDecoder:
        return JsonStreamDecoder(max_event_bytes, unwrap=normalizer.json_unwrap)

    kind = normalizer.framing
    if kind is None:
        if media == "text/event-stream":
            kind = "sse"
        elif media in NDJSON_TYPES:
            kind = "ndjson"
        elif media in JSON_TYPES or media.endswith("+json"):
            kind = "json"
        else:
            return SniffingDecoder(sse, json_values)
    if kind == "sse":
        return sse()
    if kind == "ndjson":
        return NDJSONDecoder(max_event_bytes)
    if kind == "length_prefixed":  # Google's )]}' + length-prefixed frames (gemini_web)
        return LengthPrefixedDecoder(max_event_bytes)
    return json_values()


class StreamTap(AnswerTally):
    def __init__(
        self,
        provider: str,
        status: int,
        content_type: str | None = None,
        content_encoding: str | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        super().__init__()
        self.provider = provider
        self.status = status
        self.wire_bytes = 0
        self.body_bytes = 0
        self._stopped = False
        self._closed = False
        self._normalizer = normalizer_for(provider)
        self._framing: Framing | ErrorBody
        if status >= 400:
            self._framing = ErrorBody()
        else:
            self._framing = framing_for(self._normalizer, content_type, max_event_bytes)
        self._content: ContentDecoder | None = None
        self._pending: list[Payload] = []
        try:
            self._content = content_decoder(content_encoding)
        except ContentDecodingError as e:
            self._pending.append(self._stop(str(e)))

    @property
    def finish_reason(self) -> str | None:
        return self._normalizer.finish_reason

    @property
    def complete(self) -> bool:
        """The provider's end marker has been decoded: nothing more was to come."""
        return self._normalizer.complete and not self._stopped

    def feed(self, chunk: bytes) -> list[Payload]:
        """One chunk of the response body as it came off the wire (content-encoded)."""
        out, self._pending = self._pending, []
        at = self.wire_bytes
        self.wire_bytes += len(chunk)
        if self._stopped or not chunk:
            return out
        try:
            assert self._content is not None
            body = self._content.decode(chunk)
            self.body_bytes += len(body)
            frames = self._framing.feed(body)
            if frames:  # most small chunks end no event
                out += self._frames(frames)
        except ContentDecodingError as e:
            if e.partial:  # the text decoded before the failure still counts
                self.body_bytes += len(e.partial)
                out += self._safe_frames(e.partial)
            out.append(self._stop(str(e), at))
        except Exception as e:  # a decoder bug must never reach mitmproxy
            out.append(self._stop(f"internal decoder error: {e!r}", at))
        return out

    def close(self) -> list[Payload]:
        """The body has ended: whatever the decoders still hold."""
        out, self._pending = self._pending, []
        if self._closed:
            return out
        self._closed = True
        if self._stopped:  # what the normalizer holds (a half-sent tool call) still counts
            return out + self._safe_normalizer_close()
        try:
            assert self._content is not None
            body = self._content.flush()
            self.body_bytes += len(body)
            out += self._frames(self._framing.feed(body) + self._framing.close())
        except ContentDecodingError as e:
            # A truncated body: a half-decoded last event is not an event, so the
            # framing is not flushed.
            out.append(self._stop(str(e), self.wire_bytes))
        except Exception as e:
            out.append(self._stop(f"internal decoder error: {e!r}", self.wire_bytes))
        out += self._safe_normalizer_close()
        return out

    def totals(self, events: int) -> dict[str, int]:
        return {
            "events": events,
            "wire_bytes": self.wire_bytes,
            "body_bytes": self.body_bytes,
            "text_chars": self.text_chars,
            "reasoning_chars": self.reasoning_chars,
            "tool_calls": self.tool_calls,
        }

    def outcome(self, events: int) -> Payload:
        """The terminal payload of a body that ended; `events` counts it too."""
        totals = self.totals(events)
        if isinstance(self._framing, ErrorBody):
            message = self._framing.message() or f"upstream answered {self.status}"
            return StreamError(self.status, message, totals)
        if self.provider_error is not None:
            return StreamError(self.status, self.provider_error, totals)
        return StreamEnd(self.status, self.finish_reason, totals, self.text_sha256())

    # ---------------------------------------------------------------------------

    def _frames(self, frames: list[Any]) -> list[Payload]:
        out: list[Payload] = []
        for frame in frames:
            if isinstance(frame, ServerSentEvent):  # nearly always: tested first
                self.tally(self._normalizer.on_event(frame), out)
            elif isinstance(frame, JsonDocument):
                self.tally(self._normalizer.on_json(frame), out)
            elif isinstance(frame, WireError):
                out.append(DecodeError(frame.message, frame.at_byte))
        return out

    def _safe_frames(self, body: bytes) -> list[Payload]:
        try:
            return self._frames(self._framing.feed(body))
        except Exception as e:
            return [DecodeError(f"internal decoder error: {e!r}", self.body_bytes)]

    def _safe_normalizer_close(self) -> list[Payload]:
        try:
            return self.tally(self._normalizer.close(), [])
        except Exception as e:
            return [DecodeError(f"internal decoder error: {e!r}", self.body_bytes)]

    def stop(self, message: str) -> DecodeError:
        """Decode no more of this body, for a reason of the caller's."""
        return self._stop(message, self.wire_bytes)

    def _stop(self, message: str, at: int = 0) -> DecodeError:
        self._stopped = True
        return DecodeError(message, at)


class ErrorBody:
    """The body of an error response (status >= 400): kept, bounded, for its message."""

    def __init__(self, limit: int = ERROR_BODY_LIMIT) -> None:
        self._body = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> list[Any]:
        self._body += data[: max(0, self._limit - len(self._body))]
        return []

    def close(self) -> list[Any]:
        return []

    def message(self) -> str:
        text = self._body.decode("utf-8", "replace").strip()
        try:
            found = error_message(json.loads(text))
        except ValueError:
            found = None
        if found is None:
            # A streamed error (SSE `data: {...}`) or plain text: first JSON line wins.
            for line in text.splitlines():
                _, _, data = line.partition("data:")
                try:
                    found = error_message(json.loads(data or line))
                except ValueError:
                    continue
                if found:
                    break
        return found or text[:1000]
