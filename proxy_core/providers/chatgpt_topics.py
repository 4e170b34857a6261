"""ChatGPT's stream hand-off: the WebSocket topics on ws.chatgpt.com, and how the streams
of one handed-off answer name each other.

When the conversation POST ends in a `stream_handoff` ({conversation_id, turn_exchange_id,
options: [{type: "subscribe_ws_topic", topic_id: "conversation-turn-..."}]}), the answer
arrives by another way (docs/formats.md, sources SDP, RS, W4C):

- the WebSocket `wss://ws.chatgpt.com/.../ws/user/<id>`, whose server messages are JSON,
  one entry or a list of them. An entry `{type: "message", topic_id, payload: {type:
  "conversation-turn-stream", payload: P}}` carries, in P, either `{type: "stream-item",
  stream_item_id, encoded_item}` (a piece of the very SSE text the POST would have
  carried), `{type: "done"}` or `{type: "error", message}`. The reply to a subscribe,
  `{type: "reply", reply: {type: "subscribe", topic_id, catchups: [entries]}}`, replays
  what was sent before; a catch-up may omit its topic_id (the reply's applies). Items
  come again after a re-subscribe: `stream_item_id` tells them apart.
- or `POST /backend-api/f/conversation/resume` with {conversation_id, offset}: SSE.

Link keys: the hand-off offers `topic:<topic id>` and `conversation:<conversation id>`;
a topic answer asks for the first, a resume POST for the second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TOPIC_PREFIX = "conversation-turn-"
HANDOFF = "stream_handoff"
RESUME_PATH = "/conversation/resume"


@dataclass(frozen=True, slots=True)
class TopicItem:
    """One thing a topic message says of its answer: `kind` is "item" (with the encoded
    SSE text and its id, when given), "done" or "error" (with its message)."""

    topic: str
    kind: str
    text: str = ""
    item_id: str | None = None


def topic_items(value: Any) -> list[TopicItem]:
    """The conversation-turn items of one server message, catch-ups first where a
    subscribe reply holds them; everything else (other topics, presence, acks) is none."""
    out: list[TopicItem] = []
    for entry in value if isinstance(value, list) else [value]:
        if not isinstance(entry, dict):
            continue
        if entry.get("type") == "reply":
            reply = entry.get("reply")
            if isinstance(reply, dict) and isinstance(reply.get("catchups"), list):
                for catchup in reply["catchups"]:
                    if isinstance(catchup, dict):
                        _entry(catchup, reply.get("topic_id"), out)
            continue
        _entry(entry, None, out)
    return out


def _entry(entry: dict[str, Any], default_topic: Any, out: list[TopicItem]) -> None:
    topic = entry.get("topic_id", default_topic)
    payload = entry.get("payload")
    if (entry.get("type") != "message" or not isinstance(topic, str) or not topic.startswith(TOPIC_PREFIX)
            or not isinstance(payload, dict) or payload.get("type") != "conversation-turn-stream"):
        return
    inner = payload.get("payload")
    if not isinstance(inner, dict):
        return
    kind = inner.get("type")
    if kind == "stream-item" and isinstance(inner.get("encoded_item"), str):
        item_id = inner.get("stream_item_id")
        out.append(TopicItem(topic, "item", inner["encoded_item"], item_id if isinstance(item_id, str) else None))
    elif kind == "done":
        out.append(TopicItem(topic, "done"))
    elif kind == "error":
        message = inner.get("message")
        out.append(TopicItem(topic, "error", message if isinstance(message, str) else "WebSocket turn error"))


def handoff_keys(data: Any) -> list[str]:
    """The keys a `stream_handoff` event (its data as the provider.event carries it) offers."""
    if not isinstance(data, dict):
        return []
    keys = [f"topic:{o['topic_id']}" for o in data.get("options") or []
            if isinstance(o, dict) and isinstance(o.get("topic_id"), str)]
    if isinstance(data.get("conversation_id"), str):
        keys.append(f"conversation:{data['conversation_id']}")
    return keys


def continuation_keys(request: dict[str, Any]) -> list[str]:
    """The keys a new stream's request (its stream.start `request`) asks for: a topic
    answer its topic, a resume POST its conversation."""
    if isinstance(request.get("topic_id"), str):
        return [f"topic:{request['topic_id']}"]
    path = request.get("path")
    if isinstance(path, str) and RESUME_PATH in path and isinstance(request.get("conversation_id"), str):
        return [f"conversation:{request['conversation_id']}"]
    return []


__all__ = ["HANDOFF", "TopicItem", "continuation_keys", "handoff_keys", "topic_items"]
