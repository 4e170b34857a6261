"""The OpenAI normalizer through the whole pure pipeline (content decoding, SSE, normalizer)."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy_core.payloads import DecodeError, StreamEnd, StreamError, TextDelta, ToolCall
from proxy_core.pipeline.tap import StreamTap
from tests.conftest import chunkings, one_byte_at_a_time
from tests.support import fixtures
from tests.support.fixtures import ENCODINGS, Fixture, encode, header_for


def run_tap(chunks: list[bytes], coding: str = "identity", content_type: str = "text/event-stream",
            status: int = 200, provider: str = "openai") -> tuple[list, object]:
    tap = StreamTap(provider, status, content_type, header_for(coding))
    out = []
    for chunk in chunks:
        out += tap.feed(chunk)
    out += tap.close()
    return out, tap.outcome(len(out) + 2)


def assert_matches(payloads: list, outcome: object, fx: Fixture) -> None:
    text = "".join(p.text for p in payloads if p.type == "text.delta")
    assert text == fx.text
    assert "".join(p.text for p in payloads if p.type == "reasoning.delta") == fx.reasoning
    assert [p.fields() for p in payloads if p.type == "tool_call"] == fx.tool_calls
    usages = [p.fields() for p in payloads if p.type == "usage"]
    assert (usages[-1] if usages else None) == fx.usage
    assert not [p for p in payloads if p.type == "decode.error"]
    assert isinstance(outcome, StreamEnd)
    assert outcome.finish_reason == fx.finish_reason
    assert outcome.text_sha256 == hashlib.sha256(fx.text.encode()).hexdigest()
    assert outcome.totals["text_chars"] == len(fx.text)
    assert outcome.totals["tool_calls"] == len(fx.tool_calls)


FIXTURES = {
    "chat-text": fixtures.openai_chat_text(),
    "chat-text-ascii-escapes": fixtures.openai_chat_text(ascii_only=True),
    "chat-tools": fixtures.openai_chat_tools(),
    "responses": fixtures.openai_responses(),
}


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_whole_and_byte_by_byte(name):
    fx = FIXTURES[name]
    assert_matches(*run_tap([fx.body]), fx)
    assert_matches(*run_tap(one_byte_at_a_time(fx.body)), fx)


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("coding", ENCODINGS)
@given(data=st.data())
def test_any_chunking_in_any_encoding(name, coding, data):
    fx = FIXTURES[name]
    wire = encode(fx.body, coding)
    payloads, outcome = run_tap(data.draw(chunkings(wire)), coding)
    assert payloads == run_tap([wire], coding)[0]
    assert_matches(payloads, outcome, fx)


def test_text_deltas_are_never_split_inside_a_character():
    fx = FIXTURES["chat-text"]
    payloads, _ = run_tap(one_byte_at_a_time(fx.body))
    assert [p.text for p in payloads if isinstance(p, TextDelta)] == fixtures.ANSWER_PARTS


def test_tool_call_is_emitted_once_when_complete():
    fx = FIXTURES["chat-tools"]
    payloads, _ = run_tap([fx.body])
    kinds = [p.type for p in payloads]
    # Text first, then both calls together when finish_reason arrives.
    assert kinds == ["text.delta", "tool_call", "tool_call"]


def test_tool_calls_without_finish_reason_flush_at_end():
    body = b"".join(
        b"data: " + json.dumps(c).encode() + b"\n\n"
        for c in [
            {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{\"a\""}}]}}]},
            {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}}]},
        ]
    )
    payloads, outcome = run_tap([body])
    assert [p for p in payloads if isinstance(p, ToolCall)] == [ToolCall("c1", "f", {"a": 1}, 0)]
    assert outcome.finish_reason is None


def test_tool_call_with_bad_arguments_keeps_the_raw_text():
    body = b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{oops"}}]},"finish_reason":"tool_calls"}]}\n\n'
    payloads, _ = run_tap([body])
    error, call = payloads
    assert isinstance(error, DecodeError) and "not JSON" in error.message
    assert call == ToolCall("c", "f", {}, 0, raw_arguments="{oops")


def test_malformed_json_is_a_decode_error_and_the_stream_goes_on():
    body = (
        b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{"content":\n\n'
        b'data: {"choices":[{"index":0,"delta":{"content":"b"},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    payloads, outcome = run_tap([body])
    assert [p.type for p in payloads] == ["text.delta", "decode.error", "text.delta"]
    assert payloads[1].at_byte == body.index(b'data: {"choices":[{"index":0,"delta":{"content":\n')
    assert outcome.finish_reason == "stop"


def test_sse_comments_and_data_without_space():
    body = b': OPENROUTER PROCESSING\n\ndata:{"choices":[{"index":0,"delta":{"content":"x"}}]}\n\ndata:[DONE]\n\n'
    payloads, _ = run_tap([body])
    assert payloads == [TextDelta("x", 0)]


def test_error_inside_the_stream_ends_it_with_stream_error():
    body = b'data: {"choices":[{"index":0,"delta":{"content":"par"}}]}\n\ndata: {"error":{"message":"overloaded","type":"server_error"}}\n\n'
    payloads, outcome = run_tap([body])
    assert payloads == [TextDelta("par", 0)]
    assert isinstance(outcome, StreamError) and outcome.message == "overloaded"


def test_error_status_gives_stream_error_with_the_message():
    body = json.dumps({"error": {"message": "Rate limit reached for gpt-4o", "type": "requests", "code": "rate_limit_exceeded"}}).encode()
    payloads, outcome = run_tap([body[:10], body[10:]], content_type="application/json", status=429)
    assert payloads == []
    assert outcome == StreamError(429, "Rate limit reached for gpt-4o", outcome.totals)


def test_error_status_with_a_non_json_body():
    _, outcome = run_tap([b"<html>Bad gateway</html>"], content_type="text/html", status=502)
    assert isinstance(outcome, StreamError) and outcome.message == "<html>Bad gateway</html>"


def test_non_streamed_completion_is_decoded_too():
    completion = {
        "id": "chatcmpl-1", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi ✓",
                     "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                     "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    body = json.dumps(completion).encode()
    payloads, outcome = run_tap([body], "gzip" if False else "identity", content_type="application/json")
    assert [p.type for p in payloads] == ["text.delta", "tool_call", "usage"]
    assert outcome.finish_reason == "tool_calls"


def test_corrupt_gzip_gives_one_decode_error_and_a_proper_end():
    wire = encode(FIXTURES["chat-text"].body, "gzip")
    broken = wire[:40] + b"\x00" * 30 + wire[70:]
    payloads, outcome = run_tap([broken[i:i + 16] for i in range(0, len(broken), 16)], "gzip")
    assert len([p for p in payloads if isinstance(p, DecodeError)]) == 1
    assert isinstance(outcome, StreamEnd)


def test_truncated_gzip_keeps_the_text_decoded_so_far():
    fx = FIXTURES["chat-text"]
    wire = encode(fx.body, "gzip")
    payloads, outcome = run_tap([wire[: len(wire) - 12]], "gzip")
    errors = [p for p in payloads if isinstance(p, DecodeError)]
    assert len(errors) == 1 and "truncated" in errors[0].message
    assert "".join(p.text for p in payloads if isinstance(p, TextDelta)) == fx.text


def test_parallel_calls_without_index_are_told_apart_by_id():
    chunks = [
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"id": "b", "type": "function", "function": {"name": "g", "arguments": "{\"y\":2}"}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    payloads, _ = run_tap([body])
    assert payloads == [ToolCall("a", "f", {"x": 1}, 0), ToolCall("b", "g", {"y": 2}, 0)]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/octet-stream"])
@given(data=st.data())
def test_a_silent_content_type_is_settled_by_the_body(content_type, data):
    fx = FIXTURES["chat-tools"]
    payloads, outcome = run_tap(data.draw(chunkings(b"\n" + fx.body)), content_type=content_type)
    assert_matches(payloads, outcome, fx)
    completion = json.dumps({"choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}]})
    payloads, _ = run_tap(one_byte_at_a_time(completion.encode()), content_type=content_type)
    assert payloads == [TextDelta("hi", 0)]


def test_responses_function_call_without_output_item_done_is_emitted_at_the_end():
    events = [
        ("response.output_item.added", {"output_index": 0, "item": {"id": "fc_1", "type": "function_call",
                                                                    "call_id": "call_1", "name": "f", "arguments": ""}}),
        ("response.function_call_arguments.delta", {"item_id": "fc_1", "output_index": 0, "delta": '{"a":'}),
        ("response.function_call_arguments.delta", {"item_id": "fc_1", "output_index": 0, "delta": " 1}"}),
    ]
    body = b"".join(f"event: {n}\ndata: {json.dumps({'type': n, **d})}\n\n".encode() for n, d in events)
    payloads, _ = run_tap([body])
    assert payloads == [ToolCall("call_1", "f", {"a": 1}, 0)]


def test_tool_call_fragments_survive_a_corrupt_body():
    fx = FIXTURES["chat-tools"]
    cut = fx.body.index(b"tool_calls\"}")  # before the finish_reason chunk
    wire = encode(fx.body[:cut], "gzip")[:-8] + b"\x00" * 8  # a broken gzip trailer
    for chunks in ([wire], [wire[i:i + 16] for i in range(0, len(wire), 16)]):
        payloads, _ = run_tap(chunks, "gzip")
        assert len([p for p in payloads if isinstance(p, DecodeError)]) == 1
        assert [p.name for p in payloads if isinstance(p, ToolCall)] == ["get_weather", "lookup"]
        assert "".join(p.text for p in payloads if isinstance(p, TextDelta)) == fx.text
