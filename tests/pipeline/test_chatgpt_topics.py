"""ChatGPT's stream hand-off over ws.chatgpt.com, pure: topic messages in, one answer per
conversation-turn topic out, decoded as the conversation POST is."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from proxy_core.payloads import ReasoningDelta, StreamAbort, StreamEnd, StreamError
from proxy_core.pipeline.websocket import WebSocketTap
from proxy_core.providers.chatgpt_topics import continuation_keys, handoff_keys, topic_items
from tests.pipeline.test_websocket import Recorder
from tests.support import webapps
from tests.support.websocket import dumps


def run(messages: list, tap: WebSocketTap | None = None, close: bool = False) -> Recorder:
    tap = tap or WebSocketTap("chatgpt_web")
    rec = Recorder()
    rec.take(tap.start())
    rec.take(tap.message(True, dumps({"id": 2, "type": "subscribe", "topic_id": webapps.TOPIC})))
    for m in messages:
        rec.take(tap.message(False, dumps(m)))
    if close:
        rec.take(tap.close(True, 1001))
    return rec


def test_a_topic_is_one_answer_with_the_posts_text_reasoning_and_finish():
    fx = webapps.chatgpt_v1()
    rec = run(webapps.chatgpt_topic_messages(fx.body))
    assert list(rec.streams) == [0]
    assert rec.summaries[0] == {"type": "conversation-turn", "topic_id": webapps.TOPIC}
    assert rec.text(0) == fx.text
    assert "".join(p.text for p in rec.streams[0] if isinstance(p, ReasoningDelta)) == fx.reasoning
    end = rec.terminal(0)
    assert isinstance(end, StreamEnd) and end.finish_reason == fx.finish_reason
    assert end.totals["repeated_items"] == 1  # the replayed item was dropped, not decoded twice


@given(st.integers(1, 40), st.data())
def test_any_split_of_the_sse_into_items_and_catchups(pieces, data):
    fx = webapps.chatgpt_v1()
    catchups = data.draw(st.integers(1, pieces))
    rec = run(webapps.chatgpt_topic_messages(fx.body, pieces=pieces, catchups=catchups))
    assert rec.text(0) == fx.text and isinstance(rec.terminal(0), StreamEnd)


def test_a_topic_error_ends_the_answer_with_stream_error():
    fx = webapps.chatgpt_v1()
    messages = webapps.chatgpt_topic_messages(fx.body)[:2]
    messages.append(webapps.topic_entry({"type": "error", "message": "Conversation turn failed"}))
    rec = run(messages)
    end = rec.terminal(0)
    assert isinstance(end, StreamError) and "Conversation turn failed" in end.message


def test_the_socket_closing_mid_answer_aborts_it_by_that_side():
    fx = webapps.chatgpt_v1()
    rec = run(webapps.chatgpt_topic_messages(fx.body)[:2], close=True)
    end = rec.terminal(0)
    assert isinstance(end, StreamAbort) and end.by == "client"


def test_late_items_and_ends_of_topics_never_seen_open_nothing():
    fx = webapps.chatgpt_v1()
    messages = webapps.chatgpt_topic_messages(fx.body)
    done_elsewhere = webapps.topic_entry({"type": "done"}, "conversation-turn-other")
    rec = run([done_elsewhere, *messages, messages[1], {"type": "pong"}, [1, 2]])
    assert list(rec.streams) == [0] and rec.text(0) == fx.text


def test_two_topics_on_one_socket_are_two_answers():
    a, b = webapps.chatgpt_v1(), webapps.chatgpt_resume()
    first = webapps.chatgpt_topic_messages(a.body)
    second = [_retopic(m, "conversation-turn-b") for m in webapps.chatgpt_topic_messages(b.body, pieces=3, catchups=1)]
    interleaved = [m for pair in zip(first, second, strict=False) for m in pair] + first[len(second):]
    rec = run(interleaved)
    assert rec.summaries[0]["topic_id"] == webapps.TOPIC and rec.summaries[1]["topic_id"] == "conversation-turn-b"
    assert rec.text(0) == a.text and rec.text(1) == b.text


def _retopic(message, topic: str):
    return json.loads(dumps(message).decode().replace(webapps.TOPIC, topic))


def test_link_keys_of_the_handoff_and_of_its_continuations():
    handoff = {"conversation_id": "c-2", "turn_exchange_id": "tx-2",
               "options": [{"type": "subscribe_ws_topic", "topic_id": webapps.TOPIC}, {"type": "resume_sse"}]}
    assert handoff_keys(handoff) == [f"topic:{webapps.TOPIC}", "conversation:c-2"]
    assert continuation_keys({"topic_id": webapps.TOPIC}) == [f"topic:{webapps.TOPIC}"]
    assert continuation_keys({"path": "/backend-api/f/conversation/resume", "conversation_id": "c-2"}) == [
        "conversation:c-2"]
    assert continuation_keys({"path": "/backend-api/f/conversation", "conversation_id": "c-2"}) == []
    assert topic_items({"type": "reply", "reply": {"catchups": "nope"}}) == []


def test_a_skip_mid_topic_aborts_it_and_its_late_items_open_nothing():
    fx = webapps.chatgpt_v1()
    messages = webapps.chatgpt_topic_messages(fx.body, pieces=6, catchups=1)
    tap = WebSocketTap("chatgpt_web")
    rec = run(messages[:2], tap)
    rec.take(tap.skip(2, 300, "the decoder process fell behind"))
    for m in messages[4:]:
        rec.take(tap.message(False, dumps(m)))
    assert list(rec.streams) == [0] and fx.text.startswith(rec.text(0)) and rec.text(0) != fx.text
    end = rec.terminal(0)
    assert isinstance(end, StreamAbort) and end.by == "proxy" and "2 WebSocket messages" in end.message
