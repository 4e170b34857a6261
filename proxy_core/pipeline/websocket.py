"""The decoding pipeline of one WebSocket connection: whole messages in, answers out.

mitmproxy hands over each message whole (reassembled from its frames, permessage-deflate
already undone). One connection carries many answers, so this pipeline says which
answer each payload belongs to; every answer becomes one stream in the hub:

    Responses over WebSocket (provider `openai`, Codex's default transport): each client
        `response.create` opens an answer; the server's Responses events (the very JSON
        the SSE `data:` lines carry) go to the oldest open answer of their lane (the
        `stream_id` when sent) through the Responses normalizer; `response.completed`,
        `.failed`, `.incomplete` or `error` ends it.
    Realtime (`openai-realtime`): the server's `response.created` opens an answer (with the
        summary of the client's `response.create` waiting, if one does); events go to
        the answer of their `response_id`; `response.done` ends it.
    ChatGPT's topics (`chatgpt_web` on ws.chatgpt.com, the stream hand-off): each
        conversation-turn topic is an answer; its items carry the SSE text of the
        conversation POST, decoded by the same normalizer, each item once (by its
        `stream_item_id`: a re-subscribe replays them); `done` or `error` ends it.
    ws-json: the whole connection is one stream; each text message one `frame`.

Pure and total: no IO, no clock, nothing raises. A message is decoded only if it is at
most `max_event_bytes`; the client's request text is never kept, only a summary of it
(model, previous_response_id, how many tools and input items, generate).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from proxy_core.payloads import (
    DecodeError,
    Frame,
    Payload,
    StreamAbort,
    StreamEnd,
    StreamError,
)
from proxy_core.pipeline.tally import AnswerTally
from proxy_core.providers import normalizer_for
from proxy_core.providers.base import Normalizer, error_message, parse_json
from proxy_core.providers.chatgpt_topics import TopicItem, topic_items
from proxy_core.providers.openai_realtime import RealtimeNormalizer
from proxy_core.wire.errors import WireError
from proxy_core.wire.sse import DEFAULT_MAX_EVENT_BYTES, ServerSentEvent, SSEDecoder

WEBSOCKET_ONLY = frozenset({"ws-json", "openai-realtime"})  # their routes record WebSockets only
REALTIME = frozenset({"openai-realtime"})
TOPICS = frozenset({"chatgpt_web"})
RESPONSES_END = frozenset({"response.completed", "response.failed", "response.incomplete"})
CLEAN_CLOSE = frozenset({1000, 1001, 1005})  # normal, going away, no code given
MAX_PENDING = 64  # client requests waiting for their answer to start (Realtime)
HANDSHAKE_STATUS = 101  # the status an answer on a WebSocket has: its connection's
MAX_ITEM_IDS = 65_536  # per topic answer: the item ids remembered to drop replays
MAX_ENDED_TOPICS = 256  # per connection: topics ended, whose late items are dropped
MAX_ENDED_IDS = 256  # per connection: Realtime answers aborted by a skip, whose late events are dropped


class Answer(AnswerTally):
    """One answer on a connection, one stream: its normalizer, running totals and the
    summary of the request that asked for it."""

    def __init__(self, number: int, provider: str, summary: dict[str, Any], lane: str | None = None) -> None:
        super().__init__()
        self.number = number  # 0, 1, 2 ... on its connection
        self.summary = summary
        self.lane = lane
        self.normalizer: Normalizer = normalizer_for(provider)
        self.events = 1  # its stream.start
        self.finished = False
        self.messages = 0
        self.wire_bytes = 0
        self.binary_messages = 0
        self.error_status: int | None = None

    def feed(self, obj: Any, size: int, at: int) -> list[Payload]:
        self.messages += 1
        self.wire_bytes += size
        return self.count(self.normalizer.on_document(obj, at))

    def count(self, payloads: list[Payload]) -> list[Payload]:
        out = self.tally(payloads, [])
        self.events += len(out)
        return out

    def totals(self) -> dict[str, int]:
        totals = {
            "events": self.events + 1,  # with the terminal event
            "wire_bytes": self.wire_bytes,
            "body_bytes": self.wire_bytes,  # a message is whole and plain once mitmproxy has it
            "text_chars": self.text_chars,
            "reasoning_chars": self.reasoning_chars,
            "tool_calls": self.tool_calls,
            "messages": self.messages,
        }
        if isinstance(self.normalizer, RealtimeNormalizer):
            totals["audio_bytes"] = self.normalizer.audio_bytes
        if self.binary_messages:
            totals["binary_messages"] = self.binary_messages
        return totals

    def flush(self) -> list[Payload]:
        """What the normalizer still holds (a tool call whose end never came)."""
        try:
            return self.count(self.normalizer.close())
        except Exception as e:  # a normalizer bug never reaches mitmproxy
            return self.count([DecodeError(f"internal decoder error: {e!r}", 0)])

    def outcome(self) -> Payload:
        self.finished = True
        if self.provider_error is not None:
            return StreamError(self.error_status or HANDSHAKE_STATUS, self.provider_error, self.totals())
        return StreamEnd(HANDSHAKE_STATUS, self.normalizer.finish_reason, self.totals(), self.text_sha256())

    def abort(self, by: str, message: str) -> Payload:
        self.finished = True
        return StreamAbort(by, message, self.totals())


class TopicAnswer(Answer):
    """An answer on a ChatGPT topic: its items' SSE text, decoded as the POST's is."""

    def __init__(self, number: int, provider: str, summary: dict[str, Any], max_event_bytes: int) -> None:
        super().__init__(number, provider, summary)
        self.sse = SSEDecoder(max_event_bytes)
        self.seen: dict[str, None] = {}  # item ids, oldest first (a bounded window)
        self.repeats = 0

    def feed_item(self, item: TopicItem) -> list[Payload]:
        if item.item_id is not None:
            if item.item_id in self.seen:
                self.repeats += 1  # a catch-up replaying what already came
                return []
            self.seen[item.item_id] = None
            if len(self.seen) > MAX_ITEM_IDS:
                del self.seen[next(iter(self.seen))]
        return self.count(self._frames(self.sse.feed(item.text.encode("utf-8", "surrogatepass"))))

    def flush(self) -> list[Payload]:
        try:
            return self.count(self._frames(self.sse.close())) + super().flush()
        except Exception as e:  # a decoder bug never reaches mitmproxy
            return self.count([DecodeError(f"internal decoder error: {e!r}", 0)])

    def totals(self) -> dict[str, int]:
        totals = super().totals()
        totals["repeated_items"] = self.repeats
        return totals

    def _frames(self, frames: list[ServerSentEvent | WireError]) -> list[Payload]:
        out: list[Payload] = []
        for frame in frames:
            if isinstance(frame, ServerSentEvent):
                out += self.normalizer.on_event(frame)
            else:
                out.append(DecodeError(frame.message, frame.at_byte))
        return out


# What the tap returns: (answer, None) when an answer begins (its stream is to be opened),
# then (answer, payload) for each of its payloads, the terminal one last.
Out = tuple[Answer, Payload | None]


class WebSocketTap:
    """One WebSocket connection on a routed path."""

    def __init__(self, provider: str, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, model: str | None = None) -> None:
        self.provider = provider
        self.max_event_bytes = max_event_bytes
        self.model = model  # from the handshake (Realtime's ?model=, an openai-model header)
        self.mode = ("realtime" if provider in REALTIME else "frames" if provider in WEBSOCKET_ONLY
                     else "topics" if provider in TOPICS else "responses")
        self.messages = 0
        self.wire_bytes = 0
        self.answers = 0  # answers begun on this connection
        self.ignored = 0  # messages that belonged to no answer (acks, rate-limit notes ...)
        self.closed = False
        self._lanes: dict[str | None, deque[Answer]] = {}  # Responses: lane -> open answers, oldest first
        self._by_id: dict[str, Answer] = {}  # Realtime: response id -> answer
        self._requests: deque[dict[str, Any]] = deque(maxlen=MAX_PENDING)  # Realtime: response.create waiting
        self._connection: Answer | None = None  # ws-json: the one stream
        self._topics: dict[str, TopicAnswer] = {}  # ChatGPT: topic id -> its open answer
        self._ended_topics: deque[str] = deque(maxlen=MAX_ENDED_TOPICS)
        self._ended_ids: deque[str] = deque(maxlen=MAX_ENDED_IDS)
        self._draining: set[str | None] = set()  # Responses lanes whose answer a skip ended: its tail is dropped

    @property
    def active(self) -> list[Answer]:
        """The answers begun and not ended, oldest first."""
        found = {id(a): a for lane in self._lanes.values() for a in lane}
        found.update((id(a), a) for a in self._by_id.values())
        found.update((id(a), a) for a in self._topics.values())
        if self._connection is not None and not self._connection.finished:
            found[id(self._connection)] = self._connection
        return sorted(found.values(), key=lambda a: a.number)

    def start(self) -> list[Out]:
        """The upgrade succeeded. A ws-json connection is one stream from now on."""
        if self.mode != "frames" or self._connection is not None:
            return []
        self._connection = self._answer({"type": "websocket"})
        return [(self._connection, None)]

    def message(self, from_client: bool, content: bytes, is_text: bool = True) -> list[Out]:
        """One whole message, as mitmproxy relays it."""
        if self.closed:
            return []
        at = self.wire_bytes
        self.messages += 1
        self.wire_bytes += len(content)
        try:
            if self.mode == "frames":
                return self._frame(from_client, content, is_text, at)
            if not is_text:
                return self._binary(content)
            if len(content) > self.max_event_bytes:
                return self._too_large(from_client, content, at)
            try:
                obj = parse_json(content.decode("utf-8", "surrogatepass"))
            except ValueError as e:
                return self._undecodable(f"{self.provider}: a WebSocket message is not JSON ({e})", at)
            if self.mode == "topics":
                return self._topic_message(from_client, obj, len(content))
            if not isinstance(obj, dict):
                return self._undecodable(f"{self.provider}: a WebSocket message is a JSON "
                                         f"{type(obj).__name__}, not an object", at)
            if from_client:
                return self._client(obj)
            if self.mode == "realtime":
                return self._realtime(obj, len(content), at)
            return self._responses(obj, len(content), at)
        except Exception as e:  # a decoder bug must never reach mitmproxy
            return self._undecodable(f"internal decoder error: {e!r}", at)

    def close(self, closed_by_client: bool | None, code: int | None, reason: str = "") -> list[Out]:
        """The connection ended (a close frame from either side, or the TCP connection
        lost: code 1006). Answers still open are aborted by that side; a ws-json stream
        ends (a clean close) or is aborted."""
        if self.closed:
            return []
        self.closed = True
        by = "client" if closed_by_client else "upstream" if closed_by_client is not None else "proxy"
        said = f"WebSocket closed by the {by}" + (f" (code {code}{', ' + reason if reason else ''})" if code else "")
        out: list[Out] = []
        for answer in self.active:
            if answer is self._connection and code in CLEAN_CLOSE:
                out += self._finish(answer)
                continue
            out += [(answer, p) for p in answer.flush()]
            out.append((answer, answer.abort(by, f"{said} before the answer ended")))
        self._forget_open()
        return out

    def abort(self, by: str, message: str) -> list[Out]:
        """The proxy ended the connection (shutdown): every open answer is aborted."""
        if self.closed:
            return []
        self.closed = True
        out: list[Out] = []
        for answer in self.active:
            out.append((answer, answer.abort(by, message)))
        self._forget_open()
        return out

    def skip(self, messages: int, nbytes: int, why: str) -> list[Out]:
        """`messages` of this connection (`nbytes`) will never be seen here. The answers
        open now may have lost their start, text or end: each gets a decode.error and is
        aborted, and what still comes for them is dropped, so it never runs into the next
        answer. New answers decode as usual. A ws-json stream just goes on."""
        if self.closed or not messages:
            return []
        at = self.wire_bytes
        self.messages += messages
        self.wire_bytes += nbytes
        said = (f"{messages} WebSocket messages ({nbytes} bytes) were" if messages > 1
                else f"a WebSocket message ({nbytes} bytes) was")
        message = f"{why}: {said} not decoded"
        if self.mode == "frames":
            connection = self._connection
            if connection is None:
                return []
            connection.messages += messages  # the whole connection is its one answer
            connection.wire_bytes += nbytes
            return [(connection, p) for p in connection.count([DecodeError(message, at)])]
        out: list[Out] = []
        for answer in self.active:
            out += [(answer, p) for p in answer.flush()]
            out += [(answer, p) for p in answer.count([DecodeError(message, at)])]
            out.append((answer, answer.abort("proxy", message)))
        self._draining.update(lane for lane, queue in self._lanes.items() if queue)
        self._ended_ids.extend(self._by_id)
        self._ended_topics.extend(self._topics)
        self._forget_open()
        return out

    def _forget_open(self) -> None:
        """The open answers have each had their terminal event."""
        self._lanes.clear()
        self._by_id.clear()
        self._topics.clear()

    # ---------------------------------------------------------------------------

    def _answer(self, summary: dict[str, Any], lane: str | None = None) -> Answer:
        answer = Answer(self.answers, self.provider, summary, lane)
        self.answers += 1
        return answer

    def _finish(self, answer: Answer) -> list[Out]:
        out: list[Out] = [(answer, p) for p in answer.flush()]
        out.append((answer, answer.outcome()))
        return out

    def _client(self, obj: dict[str, Any]) -> list[Out]:
        kind = obj.get("type")
        if self.mode == "realtime":
            if kind == "response.create":
                self._requests.append(request_summary(obj.get("response") or {}, kind, self.model))
            elif kind == "session.update":
                session = obj.get("session") or {}
                if isinstance(session, dict) and isinstance(session.get("model"), str):
                    self.model = session["model"]
            else:
                self.ignored += 1
            return []
        if kind != "response.create":  # response.processed (an ack) and the like
            self.ignored += 1
            return []
        lane = obj.get("stream_id") if isinstance(obj.get("stream_id"), str) else None
        self._draining.discard(lane)
        answer = self._answer(request_summary(obj, kind, self.model), lane)
        self._lanes.setdefault(lane, deque()).append(answer)
        return [(answer, None)]

    def _responses(self, obj: dict[str, Any], size: int, at: int) -> list[Out]:
        kind = obj.get("type")
        lane = obj.get("stream_id") if isinstance(obj.get("stream_id"), str) else None
        queue = self._lanes.get(lane) or (self._lanes.get(None) if lane is not None else None)
        out: list[Out] = []
        if queue:
            answer = queue[0]
        elif self._drained(lane, kind):
            self.ignored += 1
            return []
        elif kind == "error" or (isinstance(kind, str) and kind.startswith("response.")):
            # An answer nobody was seen asking for (the socket was taken over mid-way),
            # or an error of the connection itself: a stream of its own, never another's.
            answer = self._answer({"type": kind})
            queue = self._lanes.setdefault(lane, deque())
            queue.append(answer)
            out.append((answer, None))
        else:  # codex.rate_limits, timing notes ...: not part of an answer
            self.ignored += 1
            return []
        if kind == "response.created" and not answer.summary.get("model"):
            model = (obj.get("response") or {}).get("model")
            if isinstance(model, str):
                answer.summary["model"] = model
        out += [(answer, p) for p in answer.feed(obj, size, at)]
        if kind in RESPONSES_END or kind == "error":
            if kind == "error":
                answer.error_status = _status(obj)
                answer.provider_error = answer.provider_error or error_message(obj) or "error"
            queue.popleft()
            out += self._finish(answer)
        return out

    def _drained(self, lane: str | None, kind: Any) -> bool:
        """Whether a server message of `lane` is the tail of an answer a skip ended."""
        for candidate in (lane, None) if lane is not None else (None,):  # as the queues fall back
            if candidate in self._draining:
                if kind in RESPONSES_END or kind == "error":
                    self._draining.discard(candidate)
                return True
        return False

    def _realtime(self, obj: dict[str, Any], size: int, at: int) -> list[Out]:
        kind = obj.get("type")
        found = obj.get("response")
        response: dict[str, Any] = found if isinstance(found, dict) else {}
        response_id = obj.get("response_id") or response.get("id")
        out: list[Out] = []
        answer = self._by_id.get(response_id) if isinstance(response_id, str) else None
        if answer is None:
            if response_id in self._ended_ids:  # the tail of an answer a skip ended
                self.ignored += 1
                return []
            if kind == "response.created" or (isinstance(response_id, str) and kind != "response.done"):
                summary = self._requests.popleft() if self._requests else request_summary(response, kind, self.model)
                answer = self._answer(summary)
                if isinstance(response_id, str):
                    self._by_id[response_id] = answer
                out.append((answer, None))
            elif kind == "error" or kind == "response.done":
                # Realtime errors leave the session open: one that names no answer gets a
                # stream of its own (the request it refused, if one waits), never another's.
                summary = self._requests.popleft() if self._requests else {"type": kind}
                answer = self._answer(summary)
                out.append((answer, None))
                out += [(answer, p) for p in answer.feed(obj, size, at)]
                if kind == "error":
                    answer.error_status = _status(obj)
                    answer.provider_error = answer.provider_error or error_message(obj) or "error"
                return out + self._finish(answer)
            else:  # session.created, rate_limits.updated, input_audio_buffer.* ...
                self.ignored += 1
                return []
        out += [(answer, p) for p in answer.feed(obj, size, at)]
        if kind == "response.done":
            self._by_id.pop(str(response_id), None)
            out += self._finish(answer)
        return out

    def _topic_message(self, from_client: bool, obj: Any, size: int) -> list[Out]:
        items = [] if from_client else topic_items(obj)  # the client's subscribes say nothing new
        if not items:
            self.ignored += 1  # acks, presence, other topics
            return []
        out: list[Out] = []
        counted = False
        for item in items:
            answer = self._topics.get(item.topic)
            if answer is None:
                if item.kind != "item" or item.topic in self._ended_topics:
                    continue  # the end of an answer never seen, or an item after its end
                answer = TopicAnswer(self.answers, self.provider, {"type": "conversation-turn", "topic_id": item.topic},
                                     self.max_event_bytes)
                self.answers += 1
                self._topics[item.topic] = answer
                out.append((answer, None))
            if not counted:  # the message's bytes go to the first answer it speaks of
                answer.messages += 1
                answer.wire_bytes += size
                counted = True
            if item.kind == "item":
                out += [(answer, p) for p in answer.feed_item(item)]
                continue
            if item.kind == "error":
                answer.provider_error = answer.provider_error or f"{self.provider}: {item.text}"
            del self._topics[item.topic]
            self._ended_topics.append(item.topic)
            out += self._finish(answer)
        return out

    def _frame(self, from_client: bool, content: bytes, is_text: bool, at: int) -> list[Out]:
        answer = self._connection
        if answer is None:
            return []
        answer.messages += 1
        answer.wire_bytes += len(content)
        if not is_text:
            answer.binary_messages += 1
            return []
        if len(content) > self.max_event_bytes:
            return [(answer, p) for p in answer.count([DecodeError(
                f"ws-json: a {len(content)}-byte message is over the {self.max_event_bytes}-byte limit", at)])]
        text = content.decode("utf-8", "surrogatepass")
        try:
            data: Any = parse_json(text)
        except ValueError:
            data = text
        return [(answer, p) for p in answer.count([Frame("client" if from_client else "server", data)])]

    def _binary(self, content: bytes) -> list[Out]:
        active = self.active
        if active:
            active[-1].binary_messages += 1
            active[-1].wire_bytes += len(content)
        else:
            self.ignored += 1
        return []

    def _too_large(self, from_client: bool, content: bytes, at: int) -> list[Out]:
        message = (f"{self.provider}: a {len(content)}-byte WebSocket message is over the "
                   f"{self.max_event_bytes}-byte limit")
        if from_client and self.mode == "responses" and b'"response.create"' in content[:256]:
            # A request too large to read (a long history): still an answer, unsummarized.
            answer = self._answer({"type": "response.create", "too_large": True})
            self._lanes.setdefault(None, deque()).append(answer)
            return [(answer, None), *self._undecodable(message, at)]
        return self._undecodable(message, at)

    def _undecodable(self, message: str, at: int) -> list[Out]:
        """A decode.error for the newest open answer; with none open, nothing to tell it to."""
        active = self.active
        if not active:
            self.ignored += 1
            return []
        answer = active[-1]
        return [(answer, p) for p in answer.count([DecodeError(message, at)])]


def request_summary(obj: dict[str, Any], kind: Any, model: str | None = None) -> dict[str, Any]:
    """What stream.start says of a client's `response.create`: never the prompt, the
    instructions or the tools themselves, only what tells answers apart."""
    summary: dict[str, Any] = {"type": kind}
    found = obj.get("model")
    summary["model"] = found if isinstance(found, str) else model
    for key in ("previous_response_id", "stream_id", "prompt_cache_key", "service_tier"):
        value = obj.get(key)
        if isinstance(value, str):
            summary[key] = value
    for key in ("tools", "input"):
        value = obj.get(key)
        if isinstance(value, list):
            summary["tool_count" if key == "tools" else "input_items"] = len(value)
    if isinstance(obj.get("stream"), bool):
        summary["stream"] = obj["stream"]
    if isinstance(obj.get("generate"), bool):
        summary["generate"] = obj["generate"]
    if obj.get("generate") is False:
        summary["warmup"] = True
    return summary


def _status(obj: dict[str, Any]) -> int | None:
    for key in ("status", "status_code"):
        value = obj.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    return None


__all__ = ["WEBSOCKET_ONLY", "Answer", "Out", "TopicAnswer", "WebSocketTap", "request_summary"]
