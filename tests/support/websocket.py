"""WebSocket conversations as the providers' servers and clients write them: the
Responses API over WebSocket (Codex's transport) and the Realtime API, each answer's
server messages built from the same events the SSE fixtures carry."""

from __future__ import annotations

import json
from typing import Any

from tests.support import fixtures
from tests.support.fixtures import Fixture


def responses_events(fx: Fixture | None = None, response_id: str = "resp_1", model: str = "gpt-5.2-codex",
                     **extra: Any) -> list[dict[str, Any]]:
    """The server's messages of one Responses answer: the SSE fixture's `data:` objects."""
    fx = fx or fixtures.openai_responses()
    out = []
    for line in fx.body.split(b"\n"):
        if line.startswith(b"data: "):
            obj = json.loads(line[6:])
            if "response" in obj:
                obj["response"] = {**obj["response"], "id": response_id, "model": model}
            out.append({**obj, **extra})
    return out


def text_answer(parts: list[str], response_id: str = "resp_1", **extra: Any) -> list[dict[str, Any]]:
    """An answer whose text arrives in exactly these deltas."""
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"id": response_id, "status": "in_progress"}},
        {"type": "response.output_item.added", "output_index": 0, "item": {"id": "msg_1", "type": "message"}},
    ]
    events += [{"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
                "delta": part} for part in parts]
    events.append({"type": "response.completed", "response": {
        "id": response_id, "status": "completed", "usage": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}}})
    return [{**e, "sequence_number": i, **extra} for i, e in enumerate(events)]


def response_create(model: str = "gpt-5.2-codex", previous: str | None = None, generate: bool | None = None,
                    prompt: str = "a secret prompt", **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "response.create", "model": model, "instructions": "You are Codex, a private preamble.",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]}],
        "tools": [{"type": "function", "name": "shell"}, {"type": "function", "name": "apply_patch"}],
        "tool_choice": "auto", "parallel_tool_calls": False, "store": False, "stream": True,
    }
    if previous is not None:
        obj["previous_response_id"] = previous
    if generate is not None:
        obj["generate"] = generate
    return {**obj, **extra}


def warmup_answer(response_id: str = "resp_w") -> list[dict[str, Any]]:
    return [
        {"type": "response.created", "sequence_number": 0, "response": {"id": response_id, "status": "in_progress"}},
        {"type": "response.completed", "sequence_number": 1,
         "response": {"id": response_id, "status": "completed", "output": []}},
    ]


def realtime_answer(response_id: str = "resp_rt", parts: tuple[str, ...] = ("Hel", "lo ", "wörld"),
                    transcript: bool = False, audio: bytes = b"") -> list[dict[str, Any]]:
    """One Realtime answer: text (or an audio transcript), a function call, usage."""
    import base64

    kind = "response.output_audio_transcript.delta" if transcript else "response.output_text.delta"
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"id": response_id, "object": "realtime.response",
                                                  "status": "in_progress", "output": []}},
    ]
    for part in parts:
        events.append({"type": kind, "response_id": response_id, "item_id": "item_1", "output_index": 0,
                       "content_index": 0, "delta": part})
    if audio:
        events.append({"type": "response.output_audio.delta", "response_id": response_id, "item_id": "item_1",
                       "output_index": 0, "content_index": 0, "delta": base64.b64encode(audio).decode()})
    events += [
        {"type": "response.function_call_arguments.delta", "response_id": response_id, "item_id": "item_2",
         "output_index": 1, "call_id": "call_1", "delta": '{"city":'},
        {"type": "response.function_call_arguments.delta", "response_id": response_id, "item_id": "item_2",
         "output_index": 1, "call_id": "call_1", "delta": '"Zürich"}'},
        {"type": "response.function_call_arguments.done", "response_id": response_id, "item_id": "item_2",
         "output_index": 1, "call_id": "call_1", "name": "weather", "arguments": '{"city":"Zürich"}'},
        {"type": "response.output_item.done", "response_id": response_id, "output_index": 1,
         "item": {"type": "function_call", "name": "weather", "call_id": "call_1", "arguments": '{"city":"Zürich"}'}},
        {"type": "response.done", "response": {"id": response_id, "status": "completed", "status_details": None,
                                               "usage": {"total_tokens": 90, "input_tokens": 60, "output_tokens": 30}}},
    ]
    return [{**e, "event_id": f"evt_{response_id}_{i}"} for i, e in enumerate(events)]


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def codex_answer(parts: list[str], response_id: str = "resp_1") -> list[dict[str, Any]]:
    """An answer as the Responses API streams it to Codex: the message item added, its
    text deltas, the item done with the whole text (what `codex exec` prints), completed."""
    text = "".join(parts)
    item = {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"id": response_id, "status": "in_progress", "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.content_part.added", "item_id": "msg_1", "output_index": 0, "content_index": 0,
         "part": {"type": "output_text", "text": "", "annotations": []}},
    ]
    events += [{"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
                "delta": part} for part in parts]
    done = {**item, "status": "completed", "content": [{"type": "output_text", "text": text, "annotations": []}]}
    events += [
        {"type": "response.output_text.done", "item_id": "msg_1", "output_index": 0, "content_index": 0, "text": text},
        {"type": "response.output_item.done", "output_index": 0, "item": done},
        {"type": "response.completed", "response": {
            "id": response_id, "status": "completed", "output": [done],
            "usage": {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 17}}},
    ]
    return [{**e, "sequence_number": i} for i, e in enumerate(events)]
