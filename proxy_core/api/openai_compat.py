"""POST /v1/chat/completions: any captured answer, in OpenAI's chat-completions format.

`model: "streamtap/next"` waits for the next answer that starts (never a warm-up or a
hand-off stub: api/next_answer.py; optionally
`streamtap/next:tag=NAME` or `:host=HOST`, or the same in `metadata`) and streams it live;
`model: "streamtap/<stream id>"` replays a captured one. Text is `delta.content`,
reasoning `delta.reasoning_content` (the common extension), tool calls
`delta.tool_calls`, usage a last chunk with `usage`, then `[DONE]`. With `stream: false`,
one `chat.completion`. So every OpenAI-compatible tool reads Claude, Gemini or a web
app's answer as it would read OpenAI's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from proxy_core.api.handlers import KEEPALIVE_SECONDS, ApiError, EventStreamMixin
from proxy_core.api.next_answer import next_answer
from proxy_core.api.pump import BATCH
from proxy_core.hub.envelope import Envelope, dumps
from proxy_core.hub.hub import StreamRecord

PREFIX = "streamtap/"
FINISH = {  # provider finish reasons -> OpenAI's
    "stop": "stop", "end_turn": "stop", "stop_sequence": "stop", "STOP": "stop", "completed": "stop",
    "length": "length", "max_tokens": "length", "MAX_TOKENS": "length", "max_output_tokens": "length",
    "tool_calls": "tool_calls", "tool_use": "tool_calls", "function_call": "tool_calls",
    "content_filter": "content_filter", "SAFETY": "content_filter", "RECITATION": "content_filter",
    "refusal": "content_filter",
}


def parse_model(model: Any, metadata: Any) -> tuple[str | None, dict[str, str]]:
    """(stream id, or None for the next one; its host/tag filter)."""
    if not isinstance(model, str) or not model.startswith(PREFIX):
        raise ApiError(400, f"model: expected streamtap/next or streamtap/<stream id>, got {model!r}")
    name, _, filters = model[len(PREFIX):].partition(":")
    wanted: dict[str, str] = {}
    for part in filter(None, filters.split(",")):
        key, eq, value = part.partition("=")
        if key not in ("tag", "host") or not eq or not value:
            raise ApiError(400, f"model: {part!r} is not tag=NAME or host=HOST")
        wanted[key] = value
    if isinstance(metadata, dict):
        wanted.update({k: str(v) for k, v in metadata.items() if k in ("tag", "host")})
    if name == "next":
        return None, wanted
    if not name or wanted:
        raise ApiError(400, "model: a stream id takes no filter")
    return name, wanted


class ChatCompletionsHandler(EventStreamMixin):
    PARAMS = frozenset()

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, ApiError) and not self._headers_written:
            # OpenAI's error shape, so that its clients report the message.
            kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}
            self.write_json({"error": {"message": str(e), "type": kind.get(e.status, "api_error"), "code": e.status}},
                            e.status)
        else:
            super()._handle_request_exception(e)

    async def post(self) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise ApiError(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        stream_id, wanted = parse_model(body.get("model"), body.get("metadata"))
        live = body.get("stream", False) is True
        self.admit_reader()
        self.hub.subscribers += 1
        try:
            record = await self._find(stream_id, wanted)
            if live:
                await self._stream(record)
            else:
                await self._whole(record)
        finally:
            self.hub.subscribers -= 1

    async def _find(self, stream_id: str | None, wanted: dict[str, str]) -> StreamRecord:
        if stream_id is not None:
            record = self.hub.streams.get(stream_id)
            if record is None:
                raise ApiError(404, f"no stream {stream_id!r}")
            return record
        record = await next_answer(  # the next answer: one that starts from now on
            self.hub, self.hub.last_offset, lambda request: all(request.get(k) == v for k, v in wanted.items()),
            self.hub.clock() + 600, lambda: self._gone, KEEPALIVE_SECONDS)
        if record is None:
            raise ApiError(504, "no answer started within 600 s")
        return record

    async def _events(self, record: StreamRecord) -> Any:
        """The stream's events, live, up to its terminal one (a gap ends it as an error)."""
        cursor = record.first_offset - 1
        while not self._gone:
            gap, batch = self.hub.read_stream(record, cursor, BATCH)
            if gap is not None:
                raise ApiError(410, f"events {gap[0]}-{gap[1]} of stream {record.id} are no longer buffered")
            for env in batch:
                cursor = env.offset
                yield env
                if env.terminal:
                    return
            if not batch:
                if not record.active and cursor >= record.last_offset:
                    return
                await self.hub.wait(self.hub.last_offset, KEEPALIVE_SECONDS)  # anything new, then look again

    async def _stream(self, record: StreamRecord) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-store")
        chunks = _Chunks(record)
        async for env in self._events(record):
            for chunk in chunks.of(env):
                self.write(b"data: " + dumps(chunk) + b"\n\n")
            await self.flush()
        self.write(b"data: [DONE]\n\n")
        self.finish()

    async def _whole(self, record: StreamRecord) -> None:
        chunks = _Chunks(record)
        async for env in self._events(record):
            for _ in chunks.of(env):
                pass
        self.write_json(chunks.completion())


class _Chunks:
    """A stream's events as chat.completion.chunk objects, and the message they add up to."""

    def __init__(self, record: StreamRecord) -> None:
        self.id = f"chatcmpl-{record.id}"
        self.created = int(record.started)
        self.model = str(record.request.get("model") or f"{PREFIX}{record.request.get('provider', 'stream')}")
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.usage: dict[str, Any] | None = None
        self.finish: str | None = None
        self._started = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        if not self._started:
            self._started = True
            delta = {"role": "assistant", **delta}
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def of(self, env: Envelope) -> Iterator[dict[str, Any]]:
        if env.type not in ("text.delta", "reasoning.delta", "tool_call", "usage", "stream.end", "stream.abort",
                            "stream.error"):
            return
        event = env.to_dict()
        kind = env.type
        if kind == "text.delta":
            self.text.append(event["text"])
            yield self._chunk({"content": event["text"]})
        elif kind == "reasoning.delta":
            self.reasoning.append(event["text"])
            yield self._chunk({"reasoning_content": event["text"]})
        elif kind == "tool_call":
            call = {"index": len(self.tool_calls), "id": event.get("id") or f"call_{len(self.tool_calls)}",
                    "type": "function", "function": {"name": event.get("name") or "",
                                                     "arguments": event.get("raw_arguments")
                                                     or json.dumps(event.get("arguments") or {})}}
            self.tool_calls.append(call)
            yield self._chunk({"tool_calls": [call]})
        elif kind == "usage":
            self.usage = {"prompt_tokens": event.get("input_tokens"), "completion_tokens": event.get("output_tokens"),
                          "total_tokens": event.get("total_tokens")}
        elif kind == "stream.end":
            reason = event.get("finish_reason")
            self.finish = FINISH.get(reason or "", "tool_calls" if self.tool_calls else "stop")
            yield self._chunk({}, self.finish)
            if self.usage is not None:
                yield {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                       "choices": [], "usage": self.usage}
        else:  # aborted or failed: what OpenAI's clients read as an error
            yield {"error": {"message": f"the captured answer ended with {kind}: {event.get('message', '')}",
                             "type": kind.replace(".", "_")}}

    def completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text)}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.tool_calls:
            message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in self.tool_calls]
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "finish_reason": self.finish or "stop"}],
                "usage": self.usage}
