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
import zstandard

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


def openai_chat_text(ascii_only: bool = False) -> Fixture:
    """A plain answer, then a usage chunk with empty choices (stream_options.include_usage)."""
    out = [_sse(_chunk([_delta({"role": "assistant", "content": "", "refusal": None})]), ascii_only)]
    out += [_sse(_chunk([_delta({"content": part})]), ascii_only) for part in ANSWER_PARTS]
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
        text="".join(ANSWER_PARTS),
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
            body = zstandard.ZstdCompressor().compress(body)
        elif c != "identity":
            raise ValueError(c)
    return body


ENCODINGS = ["identity", "gzip", "deflate", "deflate-raw", "br", "zstd", "gzip, br"]


def header_for(coding: str) -> str:
    return coding.replace("deflate-raw", "deflate")
