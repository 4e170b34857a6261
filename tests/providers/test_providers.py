"""Anthropic and Gemini through the whole pure pipeline, at any chunking and encoding."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from proxy_core.payloads import DecodeError, Frame, StreamError, TextDelta, ToolCall
from proxy_core.providers.base import parse_json
from proxy_core.wire.errors import WireError
from proxy_core.wire.json_stream import JsonDocument, JsonStreamDecoder
from proxy_core.wire.ndjson import NDJSONDecoder
from tests.conftest import chunkings, feed_all, one_byte_at_a_time
from tests.providers.fixture_cases import fixture_tests
from tests.providers.test_openai import run_tap
from tests.support import fixtures

CASES = {
    "anthropic": ("anthropic", "text/event-stream", fixtures.anthropic_messages()),
    "gemini-sse": ("gemini", "text/event-stream", fixtures.gemini_sse()),
    "gemini-array": ("gemini", "application/json; charset=UTF-8", fixtures.gemini_json_array()),
    "aistudio": ("aistudio", "application/json+protobuf; charset=UTF-8", fixtures.aistudio()),
}


tap, test_fixture_whole_and_byte_by_byte, test_any_chunking_in_any_encoding = fixture_tests(CASES)


def test_anthropic_error_event_ends_with_stream_error():
    body = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n'
            b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n')
    payloads, outcome = run_tap([body], provider="anthropic")
    assert payloads == [TextDelta("Hi", 0)]
    assert isinstance(outcome, StreamError) and outcome.message == "Overloaded"


def test_anthropic_non_streamed_message():
    body = json.dumps({"type": "message", "content": [{"type": "text", "text": "Hello"},
                       {"type": "tool_use", "id": "t1", "name": "f", "input": {"x": 1}}],
                       "stop_reason": "tool_use", "usage": {"input_tokens": 3, "output_tokens": 4}}).encode()
    payloads, outcome = run_tap([body], content_type="application/json", provider="anthropic")
    assert [p.type for p in payloads] == ["text.delta", "tool_call", "usage"]
    assert outcome.finish_reason == "tool_use"


def test_gemini_error_element_in_the_array():
    body = b'[{"candidates":[{"content":{"parts":[{"text":"a"}]}}]},{"error":{"code":500,"message":"Internal error","status":"INTERNAL"}}]'
    payloads, outcome = run_tap([body], content_type="application/json", provider="gemini")
    assert payloads == [TextDelta("a", 0)]
    assert isinstance(outcome, StreamError) and outcome.message == "Internal error"


def test_gemini_array_elements_arrive_as_soon_as_complete():
    fx = fixtures.gemini_json_array()
    decoder = JsonStreamDecoder()
    first_end = fx.body.index(b"\n,\r\n")
    got = decoder.feed(fx.body[: first_end])  # the first element's closing brace, not the comma
    assert len(got) == 1 and isinstance(got[0], JsonDocument)


# Generic providers -----------------------------------------------------------------


def test_generic_sse_gives_frames():
    payloads, outcome = run_tap([b"event: tick\nid: 4\ndata: {\"n\": 1}\n\ndata: plain\n\n"], provider="sse")
    assert payloads == [Frame("tick", {"n": 1}, "4"), Frame("message", "plain", "4")]


def test_generic_ndjson_gives_frames_and_survives_a_bad_line():
    body = b'{"a":1}\r\n\n{"b":\n{"c":"\xc3\xa9"}'
    payloads, _ = run_tap(one_byte_at_a_time(body), content_type="text/plain", provider="ndjson")
    assert [type(p) for p in payloads] == [Frame, DecodeError, Frame]
    assert payloads[2].data == {"c": "é"}


def test_generic_json_array_gives_one_frame_per_element():
    payloads, _ = run_tap([b'[{"a":1}, [2], "x"]'], content_type="application/json", provider="json")
    assert [p.data for p in payloads] == [{"a": 1}, [2], "x"]


# The JSON value reader --------------------------------------------------------------

TRICKY_VALUES = [
    ['text with ] and [[[null,"x"]],"model"] inside', {"k": '}\\"}', "u": "🎉"}],
    12500.0, True, None, "🎉 é", {"deep": [[[[{}]]]]},
]
# Raw UTF-8 and \u escapes (a surrogate pair), an XSSI prefix, odd whitespace.
TRICKY = (
    b")]}'\n[" + json.dumps(TRICKY_VALUES[0], ensure_ascii=False).encode() + b",\n 12.5e3 , true ,null, "
    + json.dumps(TRICKY_VALUES[4]).encode() + b", " + json.dumps(TRICKY_VALUES[5]).encode() + b"]"
)


def read_all(chunks: list[bytes], **kw) -> list:
    return feed_all(JsonStreamDecoder(**kw), chunks)


def test_json_reader_values():
    assert [d.value for d in read_all([TRICKY])] == TRICKY_VALUES


@given(chunkings(TRICKY))
def test_json_reader_is_chunk_invariant(chunks):
    assert read_all(chunks) == read_all([TRICKY])


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids, max_size=4),
                    max_leaves=20).flatmap(lambda v: st.tuples(st.just(v), st.lists(st.just(v), min_size=1, max_size=3))),
       st.data())
def test_json_reader_round_trips_any_values(sample, data):
    _, values = sample
    body = ("[" + ",\n".join(json.dumps(v, ensure_ascii=data.draw(st.booleans())) for v in values) + "]").encode()
    assert [d.value for d in read_all(data.draw(chunkings(body)))] == values


def test_json_reader_bounds_a_huge_value_and_goes_on():
    body = b'[{"a": "' + b"x" * 5000 + b'"}, {"b": 1}]'
    for chunks in ([body], [body[i:i + 100] for i in range(0, len(body), 100)]):
        out = read_all(chunks, max_event_bytes=1024)
        assert [type(o) for o in out] == [WireError, JsonDocument]
        assert out[1].value == {"b": 1}


def test_json_reader_reports_truncation_and_malformed_values():
    assert [type(o) for o in read_all([b'[{"a":1},{"b":'])] == [JsonDocument, WireError]
    out = read_all([b'[{"a":1}, {"b" 2}, {"c":3}]'])
    assert [type(o) for o in out] == [JsonDocument, WireError, JsonDocument]
    assert [type(o) for o in read_all([b"[1,2"])] == [JsonDocument, WireError]


def test_ndjson_reader_bounds_long_lines():
    d = NDJSONDecoder(max_event_bytes=1024)
    out = d.feed(b'{"a": "' + b"y" * 3000)
    out += d.feed(b'"}\n{"ok": true}\n') + d.close()
    assert [type(o) for o in out] == [WireError, JsonDocument]
    assert not isinstance(out[1], ToolCall) and out[1].value == {"ok": True}


def test_aistudio_error_element_ends_with_stream_error():
    body = b'[[[[[[[[null,"par"]],"model"]]]]],[13,"Internal error encountered.",[]]]'
    payloads, outcome = run_tap([body], content_type="application/json+protobuf", provider="aistudio")
    assert payloads == [TextDelta("par", 0)]
    assert isinstance(outcome, StreamError) and outcome.message == "Internal error encountered. (code 13)"


def test_aistudio_text_that_looks_like_structure_stays_text():
    fx = fixtures.aistudio()
    payloads, _ = run_tap(one_byte_at_a_time(fx.body), content_type="application/json+protobuf", provider="aistudio")
    assert fixtures.AISTUDIO_TRAP in [p.text for p in payloads if isinstance(p, TextDelta)]


def test_aistudio_typed_values():
    from proxy_core.providers.aistudio import struct_value, typed_value

    assert typed_value([0]) is None
    assert typed_value([None, 2]) == 2
    assert typed_value([None, None, "s"]) == "s"
    assert typed_value([None, None, None, 1]) is True and typed_value([None, None, None, 0]) is False
    assert typed_value([None, None, None, None, [["k", [None, 1]]]]) == {"k": 1}
    assert typed_value([None, None, None, None, None, [[None, 1], [None, None, "a"]]]) == [1, "a"]
    assert typed_value([None, None, None, None, None, [[]]]) == []
    assert struct_value([]) == {} and struct_value([[]]) == {}


def test_aistudio_body_nested_one_level_less_still_gives_text():
    """Defensive: if the events were not wrapped in the outer list, their text still comes out."""
    fx = fixtures.aistudio()
    events = json.loads(fx.body)[0]
    body = json.dumps(events, ensure_ascii=False).encode()  # [event, event, ...]
    payloads, outcome = run_tap(one_byte_at_a_time(body), content_type="application/json+protobuf", provider="aistudio")
    assert "".join(p.text for p in payloads if isinstance(p, TextDelta)) == fx.text
    assert [p.name for p in payloads if isinstance(p, ToolCall)] == ["get_weather"]
    assert outcome.finish_reason == "STOP"


def test_json_reader_skips_nul_bytes_between_values():
    body = b'[\x00{"a": 1}\x00,\x00{"b": "x\\u0000y"}]\x00'
    assert [d.value for d in read_all([body])] == [{"a": 1}, {"b": "x\x00y"}]


def loads_outcome(parse, text: str) -> tuple:
    try:
        return ("value", repr(parse(text)))  # repr: NaN is not equal to itself
    except Exception as e:
        return ("error", type(e), str(e))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
# What can surround SSE data: whitespace, a BOM, extra data, a cut-off value.
AROUND = st.sampled_from(["", " ", "\n", "\r\n\t", "\ufeff", "x", "]", "}", ",1", " 2", "\"", "[", "{"])


@given(JSON_VALUES, AROUND, AROUND, st.data())
def test_parse_json_answers_as_json_loads(value, before, after, data):
    text = before + json.dumps(value, ensure_ascii=data.draw(st.booleans())) + after
    cut = data.draw(st.integers(0, len(text)))
    for sample in (text, text[:cut]):
        assert loads_outcome(parse_json, sample) == loads_outcome(json.loads, sample)


@given(st.text(max_size=40))
def test_parse_json_answers_as_json_loads_for_any_text(text):
    assert loads_outcome(parse_json, text) == loads_outcome(json.loads, text)
