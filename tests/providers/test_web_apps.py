"""The browser chat apps through the whole pure pipeline (StreamTap), at any chunking and
content encoding. Every body is constructed to the public sources (tests/support/webapps.py
names them; docs/formats.md has the details)."""

from __future__ import annotations

import json

import pytest

from proxy_core.payloads import DecodeError, ProviderEvent, StreamEnd, StreamError, TextDelta, ToolResult
from proxy_core.pipeline.tap import StreamTap
from tests.conftest import one_byte_at_a_time
from tests.providers.fixture_cases import fixture_tests
from tests.providers.test_openai import run_tap
from tests.support import webapps

CASES = {
    "chatgpt-v1": ("chatgpt_web", "text/event-stream; charset=utf-8", webapps.chatgpt_v1()),
    "chatgpt-v1-crlf": ("chatgpt_web", "text/event-stream", webapps.chatgpt_v1(eol="\r\n")),
    "chatgpt-handoff": ("chatgpt_web", "text/event-stream", webapps.chatgpt_handoff()),
    "chatgpt-resume": ("chatgpt_web", "text/event-stream", webapps.chatgpt_resume()),
    "chatgpt-cumulative": ("chatgpt_web", "text/event-stream", webapps.chatgpt_cumulative()),
    "claude": ("claude_web", "text/event-stream; charset=utf-8", webapps.claude_web()),
    "claude-crlf": ("claude_web", "text/event-stream", webapps.claude_web(eol="\r\n")),
    "claude-legacy": ("claude_web", "text/event-stream", webapps.claude_web_legacy()),
    "gemini": ("gemini_web", "application/json; charset=utf-8", webapps.gemini_web()),
}


tap, test_fixture_whole_and_byte_by_byte, test_any_chunking_in_any_encoding = fixture_tests(CASES)


@pytest.mark.parametrize("name", [n for n in CASES if CASES[n][2].text])
def test_cuts_inside_utf8_characters(name):
    body = CASES[name][2].body
    whole = tap(name, [body])[0]
    cuts = [i for i in range(1, len(body)) if body[i] & 0xC0 == 0x80][:40]
    assert cuts
    for cut in cuts:
        assert tap(name, [body[:cut], body[cut:]])[0] == whole


def events(payloads, kind):
    return [p for p in payloads if isinstance(p, ProviderEvent) and p.provider_type == kind]


# --- ChatGPT -----------------------------------------------------------------------------

def test_chatgpt_user_echo_hidden_and_thought_messages_give_no_text_and_summaries_stay_apart():
    payloads, _ = tap("chatgpt-v1", [CASES["chatgpt-v1"][2].body])
    text = "".join(p.text for p in payloads if isinstance(p, TextDelta))
    assert "user says hi" not in text and "hidden context" not in text and "Thought for" not in text
    assert "".join(e.data["text"] for e in events(payloads, "thought_summary")) == "Greeting back"
    assert "\ue200cite\ue202turn0search0\ue201" in text  # citation markers stay as sent
    assert events(payloads, "title_generation")[0].data["title"] == "Greeting"
    turn = events(payloads, "input_message")[0].data
    assert turn == {"conversation_id": "c-1", "message_id": "u-1", "working_turn_id": "wt-1", "turn_exchange_id": "tx-1"}


def test_chatgpt_tokens_and_account_fields_never_reach_an_event():
    for name in ("chatgpt-v1", "chatgpt-handoff"):
        payloads, _ = tap(name, [CASES[name][2].body])
        dumped = json.dumps([p.fields() for p in payloads])
        assert "secret" not in dumped
    payloads, _ = tap("chatgpt-v1", [CASES["chatgpt-v1"][2].body])
    assert events(payloads, "server_ste_metadata")[0].data["metadata"] == {"model_slug": "gpt-5"}


def test_chatgpt_handoff_post_is_no_answer_and_says_where_it_went():
    payloads, outcome = tap("chatgpt-handoff", [CASES["chatgpt-handoff"][2].body])
    assert isinstance(outcome, StreamEnd) and outcome.finish_reason == "handoff"
    assert outcome.totals["text_chars"] == 0
    (handoff,) = events(payloads, "stream_handoff")
    assert handoff.data["conversation_id"] == "c-2" and handoff.data["turn_exchange_id"] == "tx-2"
    assert handoff.data["options"][0] == {"type": "subscribe_ws_topic", "topic_id": "conversation-turn-tx-2"}


def test_chatgpt_top_level_error_ends_with_stream_error():
    body = (webapps.sse("delta_encoding", '"v1"')
            + webapps.sse("delta", {"p": "", "o": "add", "v": {"message": webapps._msg("m", parts=["Par"]),
                                                               "conversation_id": "c", "error": None}, "c": 0})
            + webapps.sse(None, {"error": {"message": "Something went wrong", "code": "server_error"}}))
    payloads, outcome = run_tap([body], provider="chatgpt_web")
    assert [p for p in payloads if isinstance(p, TextDelta)] == [TextDelta("Par", 0)]
    assert isinstance(outcome, StreamError) and "Something went wrong" in outcome.message
    body = webapps.sse(None, {"message": None, "conversation_id": "c", "error": "Too many requests"})
    _, outcome = run_tap([body], provider="chatgpt_web")
    assert isinstance(outcome, StreamError) and "Too many requests" in outcome.message


def test_chatgpt_unreadable_record_is_a_decode_error_with_the_raw_text_and_decoding_goes_on():
    body = (webapps.sse("delta_encoding", '"v1"')
            + webapps.sse("delta", {"p": "", "o": "add", "v": {"message": webapps._msg("m", parts=["A"])}})
            + b"event: delta\ndata: {not json\n\n"
            + webapps.sse("delta", {"p": "/message/content/parts/0", "o": "frobnicate", "v": 1})
            + webapps.sse("delta", {"p": "/message/content/parts/0", "o": "append", "v": "B"}))
    payloads, outcome = run_tap([body], provider="chatgpt_web")
    errors = [p for p in payloads if isinstance(p, DecodeError)]
    assert len(errors) == 2 and "{not json" in errors[0].message and "frobnicate" in errors[1].message
    assert "".join(p.text for p in payloads if isinstance(p, TextDelta)) == "AB"
    assert isinstance(outcome, StreamEnd)


def test_chatgpt_bare_value_after_a_batch_continues_the_batch_s_last_op():
    body = (webapps.sse("delta", {"p": "", "o": "add", "v": {"message": webapps._msg("m", parts=[""])}})
            + webapps.sse("delta", {"p": "/message", "o": "patch", "v": [
                {"p": "/status", "o": "replace", "v": "in_progress"},
                {"p": "/content/parts/0", "o": "append", "v": "One"}]})
            + webapps.sse("delta", {"v": " two"}))
    payloads, _ = run_tap([body], provider="chatgpt_web")
    assert "".join(p.text for p in payloads if isinstance(p, TextDelta)) == "One two"


def test_chatgpt_tool_call_messages_are_not_text():
    body = (webapps.sse("delta", {"p": "", "o": "add", "v": {"message": webapps._msg(
                "x", recipient="web.run", content_type="code", channel="commentary")}})
            + webapps.sse("delta", {"p": "/message/content/text", "o": "append", "v": "search('x')"})
            + webapps.sse("delta", {"p": "", "o": "add", "v": {"message": webapps._msg("y", role="tool", parts=["res"])}})
            + webapps.sse("delta", {"p": "", "o": "add", "v": {"message": webapps._msg("z", parts=["Answer"])}}))
    payloads, _ = run_tap([body], provider="chatgpt_web")
    assert [p.text for p in payloads if isinstance(p, TextDelta)] == ["Answer"]


# --- claude.ai ---------------------------------------------------------------------------

def test_claude_summaries_limits_and_tool_results_are_events_not_text():
    payloads, _ = tap("claude", [CASES["claude"][2].body])
    assert [e.data["summary"] for e in events(payloads, "thinking_summary")] == ["Considering the greeting."]
    assert events(payloads, "message_limit")[0].data["type"] == "within_limit"
    (result,) = [p for p in payloads if isinstance(p, ToolResult)]
    assert result.id == "toolu_01" and result.content == [{"type": "text", "text": "NOT THE ANSWER"}]
    assert "NOT THE ANSWER" not in "".join(p.text for p in payloads if isinstance(p, TextDelta))
    kinds = {e.provider_type for e in payloads if isinstance(e, ProviderEvent)}
    assert {"content_block_delta.citation_start_delta", "content_block_delta.tool_use_block_update_delta"} <= kinds


def test_claude_in_stream_rate_limit_error_says_the_kind_and_reset_time():
    body = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n'
            + b"event: error\ndata: " + json.dumps(webapps.CLAUDE_RATE_LIMIT).encode() + b"\n\n")
    payloads, outcome = run_tap([body], provider="claude_web")
    assert [p for p in payloads if isinstance(p, TextDelta)] == [TextDelta("Hi", 0)]
    assert isinstance(outcome, StreamError)
    assert outcome.message == "rate_limit_error: exceeded_limit, resets at 2026-09-21T14:13:20Z"


def test_claude_unreadable_event_is_a_decode_error_with_the_raw_text_and_decoding_goes_on():
    body = (b"event: content_block_delta\ndata: {\"type\": oops\n\n"
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n'
            b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    payloads, outcome = run_tap(one_byte_at_a_time(body), provider="claude_web")
    (error,) = [p for p in payloads if isinstance(p, DecodeError)]
    assert '{\\"type\\": oops' in error.message
    assert [p for p in payloads if isinstance(p, TextDelta)] == [TextDelta("Hi", 0)]
    assert isinstance(outcome, StreamEnd)


def test_claude_429_is_a_stream_error_with_what_the_app_said():
    body = json.dumps(webapps.CLAUDE_RATE_LIMIT).encode()
    tap_ = StreamTap("claude_web", 429, "application/json")
    tap_.feed(body)
    tap_.close()
    outcome = tap_.outcome(2)
    assert isinstance(outcome, StreamError) and outcome.status == 429
    assert "exceeded_limit" in outcome.message and "1790000000" in outcome.message


# --- Gemini ------------------------------------------------------------------------------

def test_gemini_flicker_is_not_emitted_and_duplicates_count_once():
    payloads, _ = tap("gemini", [CASES["gemini"][2].body])
    assert "```" not in "".join(p.text for p in payloads if isinstance(p, TextDelta))
    assert not events(payloads, "rewrite")
    assert events(payloads, "model")[0].data == {"model": "gemini-x-pro"}
    assert events(payloads, "conversation")[0].data == {"conversation_id": "c_1", "response_id": "r_1"}


def test_gemini_rewrite_of_emitted_text_is_reported():
    frames = [[webapps.wrb(webapps.gemini_payload([webapps.gemini_candidate(t, done=d)]))]
              for t, d in (("Hello wor", False), ("Hello wor", False), ("Hello, world", True))]
    body = (")]}'\n" + "".join(webapps.google_frame(f) for f in frames)).encode()
    payloads, outcome = run_tap([body], provider="gemini_web")
    (rewrite,) = events(payloads, "rewrite")
    assert rewrite.data == {"index": 0, "kind": "text", "at": 5, "replaced": 4, "text": ", world"}
    assert "".join(p.text for p in payloads if isinstance(p, TextDelta)) == "Hello wor"  # emitted stays emitted
    assert isinstance(outcome, StreamEnd)


def test_gemini_error_frame_ends_with_stream_error():
    payloads, outcome = run_tap([webapps.gemini_web_error()], provider="gemini_web")
    assert "".join(p.text for p in payloads if isinstance(p, TextDelta)) == "Par"  # what was sent still counts
    assert isinstance(outcome, StreamError) and "1037" in outcome.message and "usage limit" in outcome.message


def test_gemini_unreadable_payload_is_a_decode_error_and_decoding_goes_on():
    good = [webapps.wrb(webapps.gemini_payload([webapps.gemini_candidate("Fine", done=True)]))]
    body = (")]}'\n" + webapps.google_frame([["wrb.fr", None, "{broken"]]) + webapps.google_frame(good)).encode()
    payloads, outcome = run_tap(one_byte_at_a_time(body), provider="gemini_web")
    (error,) = [p for p in payloads if isinstance(p, DecodeError)]
    assert "{broken" in error.message
    assert "".join(p.text for p in payloads if isinstance(p, TextDelta)) == "Fine"
    assert isinstance(outcome, StreamEnd) and outcome.finish_reason == "stop"


# --- routes: on by default, each easy to switch off ----------------------------------------

def test_web_app_routes_are_default_and_each_can_be_switched_off():
    from proxy_core.config.checks import ConfigError
    from proxy_core.config.routes import RouteTable
    from proxy_core.config.settings import Config, config_from_dict

    def table(cfg) -> RouteTable:
        return RouteTable(cfg.routes)

    default = table(Config())
    assert default.match("chatgpt.com", "/backend-api/f/conversation").provider == "chatgpt_web"
    assert default.match("chatgpt.com", "/backend-anon/conversation").provider == "chatgpt_web"
    assert default.match("chatgpt.com", "/backend-api/f/conversation/resume").provider == "chatgpt_web"
    assert default.match("chatgpt.com", "/backend-api/f/conversation/prepare") is None
    assert default.match("claude.ai", "/api/organizations/o/chat_conversations/c/completion").provider == "claude_web"
    assert default.match("claude.ai", "/api/organizations/o/chat_conversations/c/retry_completion") is not None
    assert default.match("claude.ai", "/api/organizations/o/chat_conversations") is None
    gemini = "/_/BardChatUi/data/assistant.lamda.BardFrontendService/StreamGenerate?bl=x&rt=c"
    assert default.match("gemini.google.com", gemini).provider == "gemini_web"
    assert default.match("gemini.google.com", "/_/BardChatUi/data/batchexecute?rpcids=x") is None

    only_claude = table(config_from_dict({"web_apps": ["claude"]}))
    assert only_claude.intercepts("claude.ai")
    assert not only_claude.intercepts("gemini.google.com")
    assert not only_claude.intercepts("alkalimakersuite-pa.clients6.google.com")
    assert only_claude.match("chatgpt.com", "/backend-api/f/conversation") is None
    none = table(config_from_dict({"web_apps": False}))
    assert not any(none.intercepts(h) for h in ("claude.ai", "gemini.google.com"))
    assert none.intercepts("api.openai.com")
    with pytest.raises(ConfigError, match="web_apps: unknown web app 'bard'"):
        config_from_dict({"web_apps": ["bard"]})


def test_web_app_secrets_in_headers_and_urls_are_redacted():
    from proxy_core.pipeline.redact import REDACTED, redact_headers, redact_url

    headers = redact_headers([("X-Conduit-Token", "c"), ("OpenAI-Sentinel-Proof-Token", "p"), ("oai-device-id", "d"),
                              ("anthropic-device-id", "a"), ("x-xsrf-token", "x"), ("accept", "text/event-stream")])
    assert headers == {**{k: REDACTED for k in ("x-conduit-token", "openai-sentinel-proof-token", "oai-device-id",
                                                 "anthropic-device-id", "x-xsrf-token")}, "accept": "text/event-stream"}
    url = redact_url("https://claude.ai/api/organizations/4f1e-org/chat_conversations/c1/completion")
    assert url == "https://claude.ai/api/organizations/[redacted]/chat_conversations/c1/completion"
    path = redact_url("/_/BardChatUi/data/x/StreamGenerate?bl=boq&f.sid=-42&hl=en&rt=c")
    assert "-42" not in path and "bl=boq" in path and "rt=c" in path
    socket = redact_url("wss://ws.chatgpt.com/abc/ws/user/user-9f2?verify=v-secret&x=1")
    assert socket == "wss://ws.chatgpt.com/abc/ws/user/[redacted]?[redacted]"
    assert redact_url("/ws/user/user-9f2") == "/ws/user/[redacted]"
