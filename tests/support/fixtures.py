"""Provider streams built the way the providers' servers write them, with the answer
they carry kept beside them, so tests compare against what was sent, not against what
our decoder happens to produce."""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import brotli
from mitmproxy.net import encoding as mitmproxy_encoding

# Multibyte text, emoji (a surrogate pair when \u-escaped), JSON escapes and a newline.
ANSWER_PARTS = [
    "Voilà",
    " — the naïve café",
    " serves 🎉🇫🇷",
    ' "quoted" \\ back',
    "slash\n日本語のテキスト",
    " and Ωmega.",
]


@dataclass
class Fixture:
    body: bytes
    text: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None


def _sse(obj: Any, ascii_only: bool) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=ascii_only, separators=(",", ":")).encode() + b"\n\n"


def _chunk(choices: list[dict[str, Any]], usage: Any = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion.chunk",
        "created": 1741570283,
        "model": "gpt-4o-2024-08-06",
        "service_tier": "default",
        "system_fingerprint": "fp_eb9dce56a8",
        "choices": choices,
        "usage": usage,
    }


def _delta(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


def openai_chat_text(ascii_only: bool = False, parts: list[str] = ANSWER_PARTS) -> Fixture:
    """A plain answer, then a usage chunk with empty choices (stream_options.include_usage)."""
    out = [_sse(_chunk([_delta({"role": "assistant", "content": "", "refusal": None})]), ascii_only)]
    out += [_sse(_chunk([_delta({"content": part})]), ascii_only) for part in parts]
    out.append(_sse(_chunk([_delta({}, "stop")]), ascii_only))
    usage = {
        "prompt_tokens": 19,
        "completion_tokens": 31,
        "total_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }
    out.append(_sse(_chunk([], usage), ascii_only))
    out.append(b"data: [DONE]\n\n")
    return Fixture(
        b"".join(out),
        text="".join(parts),
        usage={"input_tokens": 19, "output_tokens": 31, "total_tokens": 50},
        finish_reason="stop",
    )


def openai_chat_tools() -> Fixture:
    """Some text, then two parallel tool calls whose arguments arrive in fragments."""
    calls = [
        ("call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather", {"location": "Paris, France", "unit": "celsius"}),
        ("call_ABCDEF0123456789abcdefgh", "lookup", {"query": "café ☕ \"best\"", "limit": 3, "tags": ["a", "b"]}),
    ]
    out = [_sse(_chunk([_delta({"role": "assistant", "content": None, "refusal": None})]), False)]
    out.append(_sse(_chunk([_delta({"content": "Let me check. "})]), False))
    for tool_index, (call_id, name, args) in enumerate(calls):
        head = {"index": tool_index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        out.append(_sse(_chunk([_delta({"tool_calls": [head]})]), False))
        text = json.dumps(args, ensure_ascii=False)
        for i in range(0, len(text), 7):
            frag = {"index": tool_index, "function": {"arguments": text[i : i + 7]}}
            out.append(_sse(_chunk([_delta({"tool_calls": [frag]})]), False))
    out.append(_sse(_chunk([_delta({}, "tool_calls")]), False))
    out.append(b"data: [DONE]\n\n")
    return Fixture(
        b"".join(out),
        text="Let me check. ",
        tool_calls=[
            {"id": call_id, "name": name, "arguments": args, "index": 0} for call_id, name, args in calls
        ],
        finish_reason="tool_calls",
    )


def openai_responses() -> Fixture:
    """The Responses API: named events, reasoning summary, a function call, usage."""
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": {"id": "resp_1", "status": "in_progress"}}),
        ("response.output_item.added", {"output_index": 0, "item": {"id": "rs_1", "type": "reasoning"}}),
        ("response.reasoning_summary_text.delta", {"item_id": "rs_1", "output_index": 0, "delta": "Thinking "}),
        ("response.reasoning_summary_text.delta", {"item_id": "rs_1", "output_index": 0, "delta": "hard… ✓"}),
        ("response.output_item.added", {"output_index": 1, "item": {"id": "msg_1", "type": "message"}}),
    ]
    for part in ANSWER_PARTS:
        events.append(
            ("response.output_text.delta", {"item_id": "msg_1", "output_index": 1, "content_index": 0, "delta": part})
        )
    args = '{"city":"Zürich"}'
    events += [
        (
            "response.output_item.added",
            {"output_index": 2, "item": {"id": "fc_1", "type": "function_call", "call_id": "call_9",
                                         "name": "weather", "arguments": ""}},
        ),
        ("response.function_call_arguments.delta", {"item_id": "fc_1", "output_index": 2, "delta": args[:6]}),
        ("response.function_call_arguments.delta", {"item_id": "fc_1", "output_index": 2, "delta": args[6:]}),
        ("response.function_call_arguments.done", {"item_id": "fc_1", "output_index": 2, "arguments": args}),
        (
            "response.output_item.done",
            {"output_index": 2, "item": {"id": "fc_1", "type": "function_call", "status": "completed",
                                         "call_id": "call_9", "name": "weather", "arguments": args}},
        ),
        (
            "response.completed",
            {"response": {"id": "resp_1", "status": "completed",
                          "usage": {"input_tokens": 11, "output_tokens": 22, "total_tokens": 33}}},
        ),
    ]
    body = b""
    for seq, (name, data) in enumerate(events):
        payload = {"type": name, "sequence_number": seq, **data}
        body += f"event: {name}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()
    return Fixture(
        body,
        text="".join(ANSWER_PARTS),
        reasoning="Thinking hard… ✓",
        tool_calls=[{"id": "call_9", "name": "weather", "arguments": {"city": "Zürich"}, "index": 0}],
        usage={"input_tokens": 11, "output_tokens": 22, "total_tokens": 33},
        finish_reason="completed",
    )


def encode(body: bytes, coding: str) -> bytes:
    """`body` with a Content-Encoding applied (a comma list applies left to right)."""
    for c in [c.strip() for c in coding.split(",") if c.strip()]:
        if c == "gzip":
            body = gzip.compress(body, mtime=0)
        elif c == "deflate":
            body = zlib.compress(body)
        elif c == "deflate-raw":
            obj = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            body = obj.compress(body) + obj.flush()
        elif c == "br":
            body = brotli.compress(body)
        elif c == "zstd":
            # mitmproxy's own encoder: not the code path our decoder uses.
            body = mitmproxy_encoding.encode(body, "zstd")
        elif c != "identity":
            raise ValueError(c)
    return body


ENCODINGS = ["identity", "gzip", "deflate", "deflate-raw", "br", "zstd", "gzip, br"]


def header_for(coding: str) -> str:
    return coding.replace("deflate-raw", "deflate")


def _named_sse(name: str, obj: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


def anthropic_messages() -> Fixture:
    """Thinking (with its signature), text, a ping, and a tool_use with its input in fragments."""
    tool_input = {"location": "São Paulo", "unit": "celsius", "days": [1, 2]}
    raw = json.dumps(tool_input, ensure_ascii=False)
    ev = [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "content": [],
            "model": "claude-sonnet-4-5", "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 472, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                      "output_tokens": 2}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "thinking_delta", "thinking": "The user wants "}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "thinking_delta", "thinking": "the weather… 🌦"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1,
                                 "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
    ]
    for part in ANSWER_PARTS:
        ev.append(("content_block_delta", {"type": "content_block_delta", "index": 1,
                                           "delta": {"type": "text_delta", "text": part}}))
    ev += [
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("content_block_start", {"type": "content_block_start", "index": 2, "content_block": {
            "type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 2,
                                 "delta": {"type": "input_json_delta", "partial_json": ""}}),
    ]
    for i in range(0, len(raw), 5):
        ev.append(("content_block_delta", {"type": "content_block_delta", "index": 2,
                                           "delta": {"type": "input_json_delta", "partial_json": raw[i:i + 5]}}))
    ev += [
        ("content_block_stop", {"type": "content_block_stop", "index": 2}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                           "usage": {"output_tokens": 89}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return Fixture(
        b"".join(_named_sse(n, o) for n, o in ev),
        text="".join(ANSWER_PARTS),
        reasoning="The user wants the weather… 🌦",
        tool_calls=[{"id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "arguments": tool_input,
                     "index": 0}],
        usage={"input_tokens": 472, "output_tokens": 89, "total_tokens": 561},
        finish_reason="tool_use",
    )


def _gemini_chunks() -> list[dict[str, Any]]:
    usage = {"promptTokenCount": 9, "candidatesTokenCount": 40, "totalTokenCount": 120, "thoughtsTokenCount": 71}
    chunks: list[dict[str, Any]] = [
        {"candidates": [{"content": {"parts": [{"text": "Considering **café** options", "thought": True}],
                                     "role": "model"}, "index": 0}]},
    ]
    for part in ANSWER_PARTS:
        chunks.append({"candidates": [{"content": {"parts": [{"text": part}], "role": "model"}, "index": 0}],
                       "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
                       "modelVersion": "gemini-2.5-flash", "responseId": "pTm5aO-rIZ2Yz7IP"})
    chunks.append({"candidates": [{"content": {"parts": [
        {"functionCall": {"name": "find_flights", "args": {"from": "ZRH", "to": "Tōkyō", "stops": 0, "flex": True}}}],
        "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": usage, "modelVersion": "gemini-2.5-flash", "responseId": "pTm5aO-rIZ2Yz7IP"})
    return chunks


def _gemini_fixture(body: bytes) -> Fixture:
    return Fixture(
        body,
        text="".join(ANSWER_PARTS),
        reasoning="Considering **café** options",
        tool_calls=[{"id": None, "name": "find_flights",
                     "arguments": {"from": "ZRH", "to": "Tōkyō", "stops": 0, "flex": True}, "index": 0}],
        usage={"input_tokens": 9, "output_tokens": 40, "total_tokens": 120},
        finish_reason="STOP",
    )


def gemini_sse() -> Fixture:
    """alt=sse: `data:` lines separated by CRLF CRLF, as the Gemini API sends them."""
    return _gemini_fixture(b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in _gemini_chunks()))


def gemini_json_array() -> Fixture:
    """No alt=sse: one pretty-printed JSON array whose elements arrive over time."""
    parts = [json.dumps(c, indent=2, ensure_ascii=False).encode() for c in _gemini_chunks()]
    return _gemini_fixture(b"[" + b"\n,\r\n".join(parts) + b"\n]")


AISTUDIO_TRAP = 'a text that quotes [[[null,"x"]],"model"] verbatim'


def aistudio() -> Fixture:
    """AI Studio's GenerateContent body: [[event, ...]] in positional arrays (see
    proxy_core/providers/aistudio.py), with a thought, text, a function call sent
    twice, a signature-only part and the finish reason on the last candidate."""

    def event(parts: list[Any], usage: list[Any] | None, finish: int | None = None) -> list[Any]:
        candidate: list[Any] = [[parts, "model"], 1]  # [1]: isOutput (HAGMI), in every chunk
        if finish is not None:
            candidate.append(finish)  # [2]: the finish reason
        return [[candidate], None, usage, None, None, None, None, "v1_ChdwVG01YU9mM0FaMllpS"]

    thought = [None, "**Weighing** the café question 🤔", *([None] * 10), 1]
    call_args = [[
        ["city", [None, None, "Zürich"]],
        ["days", [None, 3]],
        ["metric", [None, None, None, 1]],
        ["opts", [None, None, None, None, [[["a", [None, 1.5]]]]]],
        ["tags", [None, None, None, None, None, [[[None, None, "x"], [None, None, "y"]]]]],
        ["none", [0]],
    ]]
    call_part = [*([None] * 10), ["get_weather", call_args]]
    usage_early = [15, None, 15, None, [[1, 15]]]
    usage = [15, 43, 130, None, [[1, 15]], None, None, None, None, 72]
    texts = [*ANSWER_PARTS, AISTUDIO_TRAP]
    events = [event([thought], usage_early)]
    events += [event([[None, t]], usage) for t in texts]
    events += [event([call_part], usage), event([call_part], usage)]  # the repeat is reported once
    signature_only = [None, "", *([None] * 12), "Es4DCssDAb4binarydata"]
    events.append(event([signature_only], usage, finish=1))
    events.append([None, None, None, ["1771093314497317", 77875770, 1764529208]])
    body = json.dumps([events], ensure_ascii=False, separators=(",", ":")).encode()
    return Fixture(
        body,
        text="".join(texts),
        reasoning="**Weighing** the café question 🤔",
        tool_calls=[{"id": None, "name": "get_weather", "index": 0, "arguments": {
            "city": "Zürich", "days": 3, "metric": True, "opts": {"a": 1.5}, "tags": ["x", "y"], "none": None}}],
        usage={"input_tokens": 15, "output_tokens": 43, "total_tokens": 130},
        finish_reason="STOP",
    )
