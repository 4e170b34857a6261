"""Bodies of coding agents' backends and of non-streamed answers, built to the shapes of
the agents' and SDKs' public sources (cited per fixture), with the answer kept beside
them. Values (ids, signatures, texts) are made up; the shapes are not."""

from __future__ import annotations

import json
from typing import Any

from tests.support.fixtures import ANSWER_PARTS, Fixture, _named_sse

TEXT = "".join(ANSWER_PARTS)


def _data(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


# Gemini CLI, Code Assist backend ----------------------------------------------------
# google-gemini/gemini-cli packages/core/src/code_assist/converter.ts
# (CaGenerateContentResponse: {response?: {candidates, usageMetadata, modelVersion ...},
# traceId?, consumedCredits?, remainingCredits?}); server.ts requestStreamingPost reads
# `data: ` lines, one JSON object per event, no [DONE], ends at EOF.

CA_USAGE = {"promptTokenCount": 812, "candidatesTokenCount": 20, "thoughtsTokenCount": 95, "totalTokenCount": 927}


def codeassist_sse() -> Fixture:
    chunks: list[dict[str, Any]] = [
        {"response": {"candidates": [{"content": {"role": "model", "parts": [
            {"text": "**Planning**\nI will read the file.", "thought": True}]}}],
            "usageMetadata": {"promptTokenCount": 812, "totalTokenCount": 812}, "modelVersion": "gemini-2.5-pro"},
         "traceId": "a1b2c3"},
    ]
    for part in ANSWER_PARTS:
        chunks.append({"response": {"candidates": [{"content": {"role": "model", "parts": [{"text": part}]}}],
                                    "usageMetadata": {"promptTokenCount": 812, "totalTokenCount": 812},
                                    "modelVersion": "gemini-2.5-pro"}, "traceId": "a1b2c3"})
    chunks.append({"response": {"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "read_file", "args": {"path": "a.py"}}, "thoughtSignature": "CiQBcsjafE1x"}]},
        "finishReason": "STOP"}], "usageMetadata": CA_USAGE, "modelVersion": "gemini-2.5-pro"},
        "traceId": "a1b2c3", "consumedCredits": [{"creditType": "GOOGLE_ONE_AI", "creditAmount": "1"}]})
    return Fixture(
        b"".join(_data(c) for c in chunks),
        text=TEXT,
        reasoning="**Planning**\nI will read the file.",
        tool_calls=[{"id": None, "name": "read_file", "arguments": {"path": "a.py"}, "index": 0}],
        usage={"input_tokens": 812, "output_tokens": 20, "total_tokens": 927},
        finish_reason="STOP",
    )


# The model router's call (routing/strategies/classifierStrategy.ts via
# baseLlmClient.generateJson): non-streamed :generateContent, JSON mode.
ROUTER_TEXT = json.dumps({"reasoning": "A simple one-file edit.", "complexity_score": 12})


def codeassist_generate() -> Fixture:
    body = {"response": {"candidates": [{"content": {"role": "model", "parts": [{"text": ROUTER_TEXT}]},
                                         "finishReason": "STOP", "index": 0}],
                         "usageMetadata": {"promptTokenCount": 300, "candidatesTokenCount": 25,
                                           "totalTokenCount": 325},
                         "modelVersion": "gemini-2.5-flash-lite"},
            "traceId": "f00dfeed"}
    return Fixture(json.dumps(body).encode(), text=ROUTER_TEXT,
                   usage={"input_tokens": 300, "output_tokens": 25, "total_tokens": 325}, finish_reason="STOP")


# Codex CLI, chatgpt.com backend over SSE -------------------------------------------
# openai/codex codex-rs/codex-api/src/sse/responses.rs (process_sse): `event: <type>`
# then `data: <json with the same type>`; text in response.output_text.delta, reasoning
# in response.reasoning_summary_text.delta, whole items in response.output_item.done,
# usage in response.completed.

CODEX_ARGS = {"command": ["bash", "-lc", "ls -la"], "workdir": "/repo"}


def codex_sse() -> Fixture:
    ev: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"type": "reasoning", "id": "rs_1", "summary": []}},
        {"type": "response.reasoning_summary_part.added", "item_id": "rs_1", "output_index": 0, "summary_index": 0,
         "part": {"type": "summary_text", "text": ""}},
        {"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "output_index": 0, "summary_index": 0,
         "delta": "**Listing** files"},
        {"type": "response.reasoning_summary_text.done", "item_id": "rs_1", "output_index": 0, "summary_index": 0,
         "text": "**Listing** files"},
        {"type": "response.output_item.done", "output_index": 0,
         "item": {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "**Listing** files"}],
                  "encrypted_content": "gAAAAABo-enc"}},
        {"type": "response.output_item.added", "output_index": 1,
         "item": {"type": "message", "id": "msg_1", "role": "assistant", "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", "item_id": "msg_1", "output_index": 1, "content_index": 0,
         "part": {"type": "output_text", "text": "", "annotations": []}},
    ]
    for part in ANSWER_PARTS:
        ev.append({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 1, "content_index": 0,
                   "delta": part})
    ev += [
        {"type": "response.output_text.done", "item_id": "msg_1", "output_index": 1, "content_index": 0, "text": TEXT},
        {"type": "response.output_item.done", "output_index": 1, "item": {
            "type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": TEXT, "annotations": []}]}},
        {"type": "response.output_item.added", "output_index": 2, "item": {
            "type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell", "arguments": ""}},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 2,
         "delta": json.dumps(CODEX_ARGS)[:20]},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 2,
         "delta": json.dumps(CODEX_ARGS)[20:]},
        {"type": "response.output_item.done", "output_index": 2, "item": {
            "type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell",
            "arguments": json.dumps(CODEX_ARGS), "status": "completed"}},
        {"type": "response.completed", "response": {
            "id": "resp_1", "status": "completed",
            "usage": {"input_tokens": 900, "input_tokens_details": {"cached_tokens": 800}, "output_tokens": 40,
                      "output_tokens_details": {"reasoning_tokens": 12}, "total_tokens": 940}}},
    ]
    return Fixture(
        b"".join(_named_sse(e["type"], e) for e in ev),
        text=TEXT,
        reasoning="**Listing** files",
        tool_calls=[{"id": "call_1", "name": "shell", "arguments": CODEX_ARGS, "index": 0}],
        usage={"input_tokens": 900, "output_tokens": 40, "total_tokens": 940},
        finish_reason="completed",
    )


CODEX_REQUEST = {
    "model": "gpt-5-codex", "instructions": "You are Codex.",
    "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list the files"}]}],
    "tools": [{"type": "function", "name": "shell", "parameters": {"type": "object"}}], "tool_choice": "auto",
    "parallel_tool_calls": False, "reasoning": {"effort": "medium", "summary": "auto"}, "store": False,
    "stream": True, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "6f1e7c9a",
}


# Non-streamed answers (the SDKs' types) ---------------------------------------------


def openai_chat_completion() -> Fixture:
    """openai-python types/chat/chat_completion.py; reasoning_content as DeepSeek and
    vLLM send it."""
    body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "gpt-4.1",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
                "role": "assistant", "content": TEXT, "refusal": None, "annotations": [], "audio": None,
                "reasoning_content": "(compat only)", "tool_calls": [{"id": "call_1", "type": "function",
                                                                       "function": {"name": "shell",
                                                                                    "arguments": "{\"cmd\":\"ls\"}"}}]}}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60,
                      "prompt_tokens_details": {"cached_tokens": 0}}, "service_tier": "default",
            "system_fingerprint": "fp_1"}
    return Fixture(json.dumps(body).encode(), text=TEXT, reasoning="(compat only)",
                   tool_calls=[{"id": "call_1", "name": "shell", "arguments": {"cmd": "ls"}, "index": 0}],
                   usage={"input_tokens": 50, "output_tokens": 10, "total_tokens": 60}, finish_reason="tool_calls")


def openai_response() -> Fixture:
    """openai-python types/responses/response.py and response_output_item.py."""
    body = {"id": "resp_1", "object": "response", "created_at": 1700000000, "model": "gpt-5", "status": "completed",
            "error": None, "incomplete_details": None,
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Plan…"}]},
                {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell",
                 "arguments": "{\"cmd\":\"ls\"}", "status": "completed"},
                {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                 "content": [{"type": "output_text", "text": TEXT, "annotations": []}]}],
            "usage": {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 30,
                      "output_tokens_details": {"reasoning_tokens": 10}, "total_tokens": 130}}
    return Fixture(json.dumps(body).encode(), text=TEXT, reasoning="Plan…",
                   tool_calls=[{"id": "call_1", "name": "shell", "arguments": {"cmd": "ls"}, "index": 0}],
                   usage={"input_tokens": 100, "output_tokens": 30, "total_tokens": 130}, finish_reason="completed")


def anthropic_message() -> Fixture:
    """anthropic-sdk-python types/message.py (stream: false)."""
    body = {"id": "msg_01X", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [
        {"type": "thinking", "thinking": "Need to read file.", "signature": "EqoBsig"},
        {"type": "text", "text": TEXT},
        {"type": "tool_use", "id": "toolu_01A", "name": "Read", "input": {"file_path": "/a.py"}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 12, "cache_read_input_tokens": 9000, "cache_creation_input_tokens": 0,
                  "output_tokens": 55}}
    return Fixture(json.dumps(body).encode(), text=TEXT, reasoning="Need to read file.",
                   tool_calls=[{"id": "toolu_01A", "name": "Read", "arguments": {"file_path": "/a.py"}, "index": 0}],
                   usage={"input_tokens": 12, "output_tokens": 55, "total_tokens": 67}, finish_reason="tool_use")


def gemini_generate() -> Fixture:
    """python-genai types.py GenerateContentResponse: the body of :generateContent."""
    body = {"candidates": [{"content": {"role": "model", "parts": [
        {"text": "Weighing it", "thought": True}, {"text": TEXT}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 7, "thoughtsTokenCount": 3,
                          "totalTokenCount": 15},
        "modelVersion": "gemini-2.5-flash", "responseId": "abc"}
    return Fixture(json.dumps(body, indent=2).encode(), text=TEXT, reasoning="Weighing it",
                   usage={"input_tokens": 5, "output_tokens": 7, "total_tokens": 15}, finish_reason="STOP")
