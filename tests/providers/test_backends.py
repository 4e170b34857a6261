"""Coding agents' backends (Code Assist, chatgpt.com's Codex), non-streamed answers on
every provider, and what providers add (unknown kinds, server tools, citations,
signatures, media): through the whole pure pipeline, at any chunking and encoding."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy_core.config.routes import DEFAULT_ROUTES, RouteTable, make_route
from proxy_core.hub.hub import Hub
from proxy_core.hub.metrics import MAX_PROVIDER_EVENT_KINDS, Metrics
from proxy_core.payloads import (
    Citation,
    Media,
    ProviderEvent,
    RefusalDelta,
    Signature,
    StreamEnd,
    TextDelta,
    ToolCall,
    ToolResult,
    payload_from_dict,
)
from tests.conftest import chunkings
from tests.providers.fixture_cases import fixture_tests
from tests.providers.test_openai import run_tap
from tests.support import agent_fixtures as af
from tests.support.fixtures import _named_sse

CASES = {
    "codeassist-sse": ("codeassist", "text/event-stream", af.codeassist_sse()),
    "codeassist-generate": ("codeassist", "application/json; charset=UTF-8", af.codeassist_generate()),
    "codex-sse": ("openai", "text/event-stream", af.codex_sse()),
    "openai-chat-completion": ("openai", "application/json", af.openai_chat_completion()),
    "openai-response": ("openai", "application/json", af.openai_response()),
    "anthropic-message": ("anthropic", "application/json", af.anthropic_message()),
    "gemini-generate": ("gemini", "application/json; charset=UTF-8", af.gemini_generate()),
}


tap, test_fixture_whole_and_byte_by_byte, test_any_chunking_in_any_encoding = fixture_tests(CASES)


def test_codeassist_keeps_signatures_apart_from_text():
    payloads, _ = tap("codeassist-sse", [af.codeassist_sse().body])
    assert [p for p in payloads if isinstance(p, Signature)] == [Signature("thoughtSignature", "CiQBcsjafE1x", 0)]
    assert not [p for p in payloads if isinstance(p, ProviderEvent)]


def test_codeassist_chunk_without_response_is_an_empty_answer_and_error_ends_it():
    body = b'data: {"traceId":"t"}\n\ndata: {"response":{"candidates":[{"content":{"parts":[{"text":"a"}]}}]}}\n\n' \
           b'data: {"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}\n\n'
    payloads, outcome = run_tap([body], provider="codeassist")
    assert payloads == [TextDelta("a", 0)]
    assert outcome.type == "stream.error" and outcome.message == "Quota exceeded"


def test_codex_encrypted_reasoning_is_a_signature_not_text():
    payloads, outcome = tap("codex-sse", [af.codex_sse().body])
    assert Signature("encrypted_content", "gAAAAABo-enc", 0) in payloads
    assert not [p for p in payloads if isinstance(p, ProviderEvent)]  # every event type known


# Known new kinds ------------------------------------------------------------------------


def _block_events(index: int, block: dict, deltas: list[dict] = ()) -> list[tuple[str, dict]]:
    out = [("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})]
    out += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
    return out + [("content_block_stop", {"type": "content_block_stop", "index": index})]


SEARCH_RESULT = [{"type": "web_search_result", "url": "https://example.com/a", "title": "A",
                  "encrypted_content": "Eo8B", "page_age": "April 30, 2025"}]
CITATION = {"type": "web_search_result_location", "url": "https://example.com/a", "title": "A",
            "encrypted_index": "Eo8", "cited_text": "Paris is the capital"}


def anthropic_server_tools() -> bytes:
    """Web search as the Messages stream sends it (docs: server tools, web search tool;
    citations_delta), a redacted_thinking block, a compaction block (beta) and a new
    event type."""
    ev = [("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 10}}})]
    ev += _block_events(0, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"})
    ev += _block_events(1, {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {}},
                        [{"type": "input_json_delta", "partial_json": '{"query": "capital'},
                         {"type": "input_json_delta", "partial_json": ' of France"}'}])
    ev += _block_events(2, {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": SEARCH_RESULT})
    ev += _block_events(3, {"type": "text", "text": "", "citations": []},
                        [{"type": "citations_delta", "citation": CITATION},
                         {"type": "text_delta", "text": "Paris."}])
    ev += _block_events(4, {"type": "compaction", "content": None},
                        [{"type": "compaction_delta", "content": "Summary of the earlier turns."}])
    ev += [("brand_new_event", {"type": "brand_new_event", "x": 1}),
           ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "pause_turn"},
                              "usage": {"output_tokens": 5, "server_tool_use": {"web_search_requests": 1}}}),
           ("message_stop", {"type": "message_stop"})]
    return b"".join(_named_sse(n, o) for n, o in ev)


@given(data=st.data())
def test_anthropic_server_tools_citations_and_unknown_blocks(data):
    body = anthropic_server_tools()
    payloads, outcome = run_tap(data.draw(chunkings(body)), provider="anthropic")
    assert payloads == run_tap([body], provider="anthropic")[0]
    assert [p for p in payloads if isinstance(p, TextDelta)] == [TextDelta("Paris.", 0)]
    assert Signature("redacted_thinking", "EmwKAhgBEgy3va3pzix", 0) in payloads
    assert ToolCall("srvtoolu_01", "web_search", {"query": "capital of France"}, 0, server=True) in payloads
    assert ToolResult("srvtoolu_01", "web_search_tool_result", SEARCH_RESULT, 0) in payloads
    assert Citation("web_search_result_location", CITATION, 0) in payloads
    unknown = [p for p in payloads if isinstance(p, ProviderEvent)]
    assert [u.provider_type for u in unknown] == [
        "content_block.compaction", "content_block_delta.compaction_delta", "brand_new_event"]
    assert unknown[1].data["delta"]["content"] == "Summary of the earlier turns."  # its JSON, whole
    assert isinstance(outcome, StreamEnd) and outcome.finish_reason == "pause_turn"


def test_anthropic_whole_message_with_server_tools_and_unknown_block():
    body = json.dumps({"type": "message", "content": [
        {"type": "server_tool_use", "id": "s1", "name": "web_fetch", "input": {"url": "https://example.com"}},
        {"type": "web_fetch_tool_result", "tool_use_id": "s1", "content": {"type": "web_fetch_result"}},
        {"type": "text", "text": "It says hi.", "citations": [CITATION]},
        {"type": "container_upload", "file_id": "f1"}],
        "stop_reason": "refusal", "usage": {"input_tokens": 1, "output_tokens": 2}}).encode()
    payloads, outcome = run_tap([body], content_type="application/json", provider="anthropic")
    assert [p.type for p in payloads] == ["tool_call", "tool_result", "text.delta", "citation", "provider.event",
                                          "usage"]
    assert payloads[0].server and payloads[4] == ProviderEvent("content_block.container_upload",
                                                               {"type": "container_upload", "file_id": "f1"})
    assert outcome.finish_reason == "refusal"


def test_responses_server_tools_refusal_annotations_and_unknown_items():
    image = "aGVsbG8="  # 5 bytes
    ev = [
        {"type": "response.web_search_call.in_progress", "item_id": "ws_1", "output_index": 0},
        {"type": "response.web_search_call.searching", "item_id": "ws_1", "output_index": 0},
        {"type": "response.output_item.done", "output_index": 0, "item": {
            "type": "web_search_call", "id": "ws_1", "status": "completed",
            "action": {"type": "search", "query": "weather"}}},
        {"type": "response.output_text.annotation.added", "item_id": "m", "output_index": 1, "content_index": 0,
         "annotation_index": 0, "annotation": {"type": "url_citation", "url": "https://example.com", "title": "E"}},
        {"type": "response.refusal.delta", "item_id": "m", "output_index": 1, "content_index": 1,
         "delta": "I can't help"},
        {"type": "response.refusal.done", "item_id": "m", "output_index": 1, "content_index": 1,
         "refusal": "I can't help"},
        {"type": "response.output_item.done", "output_index": 2, "item": {
            "type": "custom_tool_call", "id": "ctc_1", "call_id": "call_9", "name": "apply_patch",
            "input": "*** Begin Patch"}},
        {"type": "response.output_item.done", "output_index": 3, "item": {
            "type": "image_generation_call", "id": "ig_1", "status": "completed", "result": image,
            "output_format": "png"}},
        {"type": "response.output_item.done", "output_index": 4, "item": {"type": "mcp_approval_request",
                                                                            "id": "mcpr_1", "name": "deploy"}},
        {"type": "response.brand_new.delta", "delta": "x"},
        {"type": "response.completed", "response": {"status": "completed", "usage": {"input_tokens": 1}}},
    ]
    payloads, outcome = run_tap([b"".join(_named_sse(e["type"], e) for e in ev)])
    assert [p.type for p in payloads] == ["tool_result", "citation", "refusal.delta", "tool_call", "tool_result",
                                          "media", "provider.event", "provider.event", "usage"]
    assert payloads[0] == ToolResult("ws_1", "web_search_call", ev[2]["item"], 0)
    assert payloads[2] == RefusalDelta("I can't help", 0)
    assert payloads[3] == ToolCall("call_9", "apply_patch", {}, 0, raw_arguments="*** Begin Patch")
    assert "result" not in payloads[4].content  # media counted, not stored
    assert payloads[5] == Media("image_generation_call", "image/png", 5, None, 0)
    assert [p.provider_type for p in payloads[6:8]] == ["output_item.mcp_approval_request", "response.brand_new.delta"]
    assert outcome.text_sha256  # the stream went on to its end
    assert isinstance(outcome, StreamEnd)


def test_chat_refusal_and_unknown_delta_fields_are_kept():
    chunk = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None, "refusal": "No.",
                                                "reasoning_details": [{"type": "reasoning.text", "text": "hm"}],
                                                "function_call": None, "audio": None}}]}
    payloads, _ = run_tap([b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n"])
    assert payloads == [RefusalDelta("No.", 0),
                        ProviderEvent("delta.reasoning_details", {"reasoning_details": [{"type": "reasoning.text",
                                                                                          "text": "hm"}]})]


def test_gemini_parts_of_every_kind():
    parts = [
        {"executableCode": {"language": "PYTHON", "code": "print(1+1)"}},
        {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "2\n"}},
        {"inlineData": {"mimeType": "image/png", "data": "aGVsbG8="}},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://b/f.pdf"}},
        {"text": "Two.", "thoughtSignature": "sig"},
        {"brandNewPart": {"x": 1}},
    ]
    grounding = {"webSearchQueries": ["q"], "groundingChunks": [{"web": {"uri": "https://e.com", "title": "E"}}]}
    body = json.dumps({"candidates": [{"content": {"role": "model", "parts": parts}, "groundingMetadata": grounding,
                                       "finishReason": "STOP"}]}).encode()
    payloads, _ = run_tap([body], content_type="application/json", provider="gemini")
    assert payloads == [
        ToolCall(None, "code_execution", {"language": "PYTHON", "code": "print(1+1)"}, 0, server=True),
        ToolResult(None, "codeExecutionResult", {"outcome": "OUTCOME_OK", "output": "2\n"}, 0),
        Media("inlineData", "image/png", 5, None, 0),
        Media("fileData", "application/pdf", None, "gs://b/f.pdf", 0),
        TextDelta("Two.", 0), Signature("thoughtSignature", "sig", 0),
        ProviderEvent("part.brandNewPart", {"brandNewPart": {"x": 1}}),
        Citation("groundingMetadata", grounding, 0),
    ]


def test_unknown_kinds_reach_the_message_extra_and_metrics():
    hub = Hub()
    record = hub.open_stream({"provider": "anthropic"}, {})
    body = anthropic_server_tools()
    payloads, outcome = run_tap([body], provider="anthropic")
    for p in [*payloads, outcome]:
        hub.publish(record.id, p)
    message = record.message()
    assert [e["provider_type"] for e in message["extra"]] == [
        "content_block.compaction", "content_block_delta.compaction_delta", "brand_new_event"]
    assert message["tool_results"][0]["content"] == SEARCH_RESULT
    assert message["citations"][0]["data"] == CITATION
    assert message["text"] == "Paris."
    text = hub.metrics.render(0, 0, hub.last_offset)
    assert 'streamtap_provider_events_total{provider="anthropic",provider_type="brand_new_event"} 1' in text
    # Round trip of the new payloads through their JSON (captures, replay).
    for p in payloads:
        assert payload_from_dict({"type": p.type, **p.fields()}) == p


def test_provider_event_metrics_are_escaped_and_bounded():
    m = Metrics()
    m.count_provider_event("openai", 'we"ird\\\n')
    for i in range(MAX_PROVIDER_EVENT_KINDS + 10):
        m.count_provider_event("openai", f"t{i}")
    text = m.render(0, 0, 0)
    assert 'provider_type="we\\"ird\\\\\\n"' in text
    assert 'provider_type="other"} 11' in text
    assert len(m.provider_events) == MAX_PROVIDER_EVENT_KINDS + 1


# Default routes: answers in, everything else out ----------------------------------------

ROUTED = [
    ("api.anthropic.com", "/v1/messages"), ("api.anthropic.com", "/v1/messages?beta=true"),
    ("api.openai.com", "/v1/chat/completions"), ("api.openai.com", "/v1/responses"),
    ("generativelanguage.googleapis.com", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
    ("generativelanguage.googleapis.com", "/v1beta/models/gemini-2.5-flash:generateContent"),
    ("cloudcode-pa.googleapis.com", "/v1internal:streamGenerateContent?alt=sse"),
    ("cloudcode-pa.googleapis.com", "/v1internal:generateContent"),
    ("daily-cloudcode-pa.googleapis.com", "/v1internal:streamGenerateContent?alt=sse"),
    ("staging-cloudcode-pa.googleapis.com", "/v1internal:generateContent"),
    ("chatgpt.com", "/backend-api/codex/responses"),
]
NOT_ROUTED = [
    ("api.anthropic.com", "/v1/messages/count_tokens?beta=true"), ("api.anthropic.com", "/v1/messages/batches"),
    ("api.anthropic.com", "/v1/models"), ("api.anthropic.com", "/api/claude_code/policy_limits"),
    ("api.anthropic.com", "/api/oauth/profile"), ("api.anthropic.com", "/api/event_logging/batch"),
    ("api.openai.com", "/v1/models"), ("api.openai.com", "/v1/responses/resp_1"),
    ("api.openai.com", "/v1/responses/input_tokens"), ("api.openai.com", "/v1/chat/completions/chatcmpl-1"),
    ("generativelanguage.googleapis.com", "/v1beta/models/gemini-2.5-flash:countTokens"),
    ("generativelanguage.googleapis.com", "/v1beta/models"),
    ("generativelanguage.googleapis.com", "/v1beta/models/gemini-2.5-flash:batchGenerateContent"),
    ("cloudcode-pa.googleapis.com", "/v1internal:loadCodeAssist"),
    ("cloudcode-pa.googleapis.com", "/v1internal:countTokens"),
    ("cloudcode-pa.googleapis.com", "/v1internal:listExperiments"),
    ("cloudcode-pa.googleapis.com", "/v1internal:recordCodeAssistMetrics"),
    ("cloudcode-pa.googleapis.com", "/v1internal:retrieveUserQuota"),
    ("chatgpt.com", "/backend-api/codex/models?client_version=0.50.0"),
    ("chatgpt.com", "/backend-api/codex/responses/compact"), ("chatgpt.com", "/backend-api/wham/usage"),
    ("chatgpt.com", "/backend-api/conversation"),
]
TABLE = RouteTable([make_route(r["host"], r["path"], r["provider"]) for r in DEFAULT_ROUTES])


@pytest.mark.parametrize(("host", "path"), ROUTED)
def test_default_routes_take_model_answers(host, path):
    assert TABLE.match(host, path) is not None


@pytest.mark.parametrize(("host", "path"), NOT_ROUTED)
def test_default_routes_leave_other_calls_out(host, path):
    route = TABLE.match(host, path)
    assert route is None or route.provider not in ("openai", "anthropic", "gemini", "codeassist"), route
