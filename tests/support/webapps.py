"""Bodies of the browser chat apps' streams, **constructed** (written by hand, not captured)
to the formats as the public sources read them: docs/formats.md names each source, and
each builder below says which it follows."""

from __future__ import annotations

import json
from typing import Any

from tests.support.fixtures import Fixture

ANSWER = "Hello, \u00e9t\u00e9 \u2615 and \U0001f600 \u2014 done.\nSecond line \ue200cite\ue202turn0search0\ue201."


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def sse(event: str | None, data: Any, pad: str = "", eol: str = "\n") -> bytes:
    head = f"event: {event}{eol}" if event else ""
    text = data if isinstance(data, str) and data.startswith(("[DONE]", '"')) else _dumps(data)
    return f"{head}data: {text}{pad}{eol}{eol}".encode()


# ---------------------------------------------------------------------------------------
# ChatGPT: v1 delta encoding (W4C stream-core tests, C2A stream_v1.py, G4F OpenaiChat.py)


def _msg(mid: str, role: str = "assistant", content_type: str = "text", channel: str | None = "final",
         recipient: str = "all", parts: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    content: dict[str, Any] = {"content_type": content_type}
    if content_type in ("text", "multimodal_text"):
        content["parts"] = [""] if parts is None else parts
    msg = {"id": mid, "author": {"role": role}, "content": content, "status": "in_progress",
           "recipient": recipient, "channel": channel, "metadata": {}}
    msg.update(extra)
    return msg


def chatgpt_v1(eol: str = "\n") -> Fixture:
    """A turn in the v1 delta encoding: the user echo, a hidden context message, thoughts
    with summaries, the answer by appends whose path is carried over (across a
    title_generation too), a batch without a path, padded records, citation markers."""
    a = ANSWER
    pieces = [a[:3], a[3:9], a[9:20], a[20:31], a[31:45], a[45:]]
    ev: list[bytes] = [
        sse("delta_encoding", '"v1"', eol=eol),
        sse(None, {"type": "resume_conversation_token", "kind": "topic", "token": "eyJhbGciOi.secret-jwt.sig",
                   "conversation_id": "c-1"}, eol=eol),
        sse(None, {"type": "input_message", "input_message": {}, "conversation_id": "c-1",
                   "message": {**_msg("u-1", role="user", parts=["user says hi"]),
                               "metadata": {"working_turn_id": "wt-1", "turn_exchange_id": "tx-1"}}}, eol=eol),
        # A hidden system/context message: its text is not the answer.
        sse("delta", {"p": "", "o": "add", "v": {"message": _msg(
            "s-1", role="system", parts=["hidden context"], metadata={"is_visually_hidden_from_conversation": True}),
            "conversation_id": "c-1", "error": None}, "c": 0}, eol=eol),
        # Thoughts: a thoughts message, content and summary growing.
        sse("delta", {"p": "", "o": "add", "v": {"message": {**_msg("t-1", content_type="thoughts", channel="analysis"),
            "content": {"content_type": "thoughts", "thoughts": []}}, "conversation_id": "c-1", "error": None},
            "c": 1}, eol=eol),
        sse("delta", {"p": "/message/content/thoughts", "o": "append",
                      "v": [{"summary": "Greeting", "content": "The user "}]}, eol=eol),
        sse("delta", {"p": "/message/content/thoughts/0/content", "o": "append", "v": "greets me."}, eol=eol),
        sse("delta", {"p": "/message/content/thoughts/0/summary", "o": "append", "v": " back"}, eol=eol),
        sse("delta", {"v": {"message": {**_msg("r-1", content_type="reasoning_recap", channel="analysis"),
                                        "content": {"content_type": "reasoning_recap", "content": "Thought for 2s"}},
                            "conversation_id": "c-1", "error": None}, "c": 2}, eol=eol),
        # The answer: a new document, then appends with the path carried over.
        sse("delta", {"p": "", "o": "add", "v": {"message": _msg("m-1", parts=[pieces[0]]), "conversation_id": "c-1",
                                                 "error": None}, "c": 3}, eol=eol),
        sse("delta", {"p": "/message/content/parts/0", "o": "append", "v": pieces[1]}, eol=eol),
        sse("delta", {"v": pieces[2]}, pad="   ", eol=eol),  # both inherited; trailing spaces
        sse(None, {"type": "title_generation", "title": "Greeting", "conversation_id": "c-1"}, eol=eol),
        sse("delta", {"v": pieces[3]}, eol=eol),  # still inherited, across the title
        sse("delta", {"o": "append", "v": pieces[4]}, eol=eol),  # path inherited
        sse(None, {"type": "message_marker", "conversation_id": "c-1", "message_id": "m-1",
                   "marker": "user_visible_token", "event": "first"}, eol=eol),
        sse("delta", {"p": "", "o": "patch", "v": [
            {"p": "/message/content/parts/0", "o": "append", "v": pieces[5]},
            {"p": "/message/status", "o": "replace", "v": "finished_successfully"},
            {"p": "/message/end_turn", "o": "replace", "v": True},
            {"p": "/message/metadata", "o": "append", "v": {"finish_details": {"type": "stop"}, "is_complete": True}},
        ]}, eol=eol),
        sse(None, {"type": "server_ste_metadata", "metadata": {"model_slug": "gpt-5", "user_id": "user-secret"},
                   "conversation_id": "c-1"}, eol=eol),
        sse(None, {"type": "message_stream_complete", "conversation_id": "c-1"}, eol=eol),
        sse(None, "[DONE]", eol=eol),
    ]
    return Fixture(b"".join(ev), text=ANSWER, reasoning="The user greets me.", finish_reason="stop")


def chatgpt_handoff() -> Fixture:
    """The hand-off POST: no answer, only where it will come from (RS, W4C, index id 62405292893)."""
    ev = [
        sse("delta_encoding", '"v1"'),
        sse(None, {"type": "resume_conversation_token", "kind": "topic", "token": "eyJ.secret-jwt.x",
                   "conversation_id": "c-2"}),
        sse(None, {"type": "stream_handoff", "conversation_id": "c-2", "turn_exchange_id": "tx-2",
                   "options": [{"type": "subscribe_ws_topic", "topic_id": "conversation-turn-tx-2"},
                               {"type": "resume_sse", "conduit_token": "secret-conduit"}]}),
        sse(None, "[DONE]"),
    ]
    return Fixture(b"".join(ev), text="", finish_reason="handoff")


def chatgpt_resume() -> Fixture:
    """The resume SSE (POST /backend-api/f/conversation/resume, IMG): the same encoding,
    here starting mid-message with bare values and nothing to inherit."""
    a = ANSWER
    ev = [
        sse("delta_encoding", '"v1"'),
        sse("delta", {"v": a[:10]}),
        sse("delta", {"v": a[10:]}),
        sse("delta", {"p": "/message/status", "o": "replace", "v": "finished_successfully"}),
        sse(None, {"type": "message_stream_complete", "conversation_id": "c-2"}),
        sse(None, "[DONE]"),
    ]
    return Fixture(b"".join(ev), text=ANSWER)


TOPIC = "conversation-turn-tx-2"


def topic_entry(item: dict[str, Any], topic: str | None = TOPIC) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "message",
                             "payload": {"type": "conversation-turn-stream", "payload": item}}
    if topic is not None:
        entry["topic_id"] = topic
    return entry


def chatgpt_topic_messages(body: bytes, pieces: int = 6, catchups: int = 2) -> list[Any]:
    """The server messages of ws.chatgpt.com carrying `body` (a conversation POST's SSE)
    on the hand-off's topic (SDP patch-websocket.ts, RS tests): a subscribe reply whose
    catch-ups hold the first items (without a topic id of their own), the rest live, one
    of them sent twice, a message of another kind between, then `done`."""
    text = body.decode()
    cut = [len(text) * i // pieces for i in range(pieces + 1)]
    items = [{"type": "stream-item", "stream_item_id": f"item-{i}", "encoded_item": text[cut[i]:cut[i + 1]]}
             for i in range(pieces)]
    out: list[Any] = [{"id": 2, "type": "reply", "reply": {
        "type": "subscribe", "topic_id": TOPIC, "catchups": [topic_entry(i, None) for i in items[:catchups]]}}]
    for n, item in enumerate(items[catchups:]):
        out.append([topic_entry(item)] if n % 2 else topic_entry(item))  # a list of entries, or one
        if n == 0:
            out.append(topic_entry(items[catchups - 1]))  # a replay: dropped by its id
            out.append({"type": "presence", "topic_id": "user-presence", "payload": {"online": True}})
    out.append(topic_entry({"type": "done"}))
    return out


def chatgpt_cumulative() -> Fixture:
    """The older form without delta_encoding: whole messages, parts[0] the text so far (C2A chatFormat.py)."""
    a = ANSWER
    ev = [sse(None, {"message": _msg("m-9", parts=[a[:k]], end_turn=None), "conversation_id": "c-9", "error": None})
          for k in (5, 17, 30)]
    ev.append(sse(None, {"message": {**_msg("m-9", parts=[a], end_turn=True), "status": "finished_successfully",
                                     "metadata": {"finish_details": {"type": "max_tokens"}}},
                         "conversation_id": "c-9", "error": None}))
    ev.append(sse(None, {"type": "moderation", "moderation_response": {"flagged": False}}))
    ev.append(sse(None, "[DONE]"))
    return Fixture(b"".join(ev), text=ANSWER, finish_reason="max_tokens")


# ---------------------------------------------------------------------------------------
# claude.ai (CLR response.rs, CUE rate-limit-watcher.js, UCA client.py, and the
# EventStreamParser of index id 54249362413 for thinking_summary_delta)


def claude_web(eol: str = "\n") -> Fixture:
    a = ANSWER
    e: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": {
            "id": "chatcompl_01", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
            "stop_reason": None}}),
        # Thinking with summaries only (not the reasoning).
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "thinking", "thinking": "", "summaries": []}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
            "type": "thinking_summary_delta", "summary": {"summary": "Considering the greeting."}}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        # Empty thinking: a start and a stop.
        ("content_block_start", {"type": "content_block_start", "index": 1,
                                 "content_block": {"type": "thinking", "thinking": ""}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        # Thinking with the reasoning itself.
        ("content_block_start", {"type": "content_block_start", "index": 2,
                                 "content_block": {"type": "thinking", "thinking": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 2,
                                 "delta": {"type": "thinking_delta", "thinking": "User greets; "}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 2,
                                 "delta": {"type": "thinking_delta", "thinking": "answer kindly."}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 2}),
        ("content_block_start", {"type": "content_block_start", "index": 3,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 3,
                                 "delta": {"type": "text_delta", "text": a[:20]}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 3}),
        # A tool call, then its result (content as input_json_delta: never text), between text blocks.
        ("content_block_start", {"type": "content_block_start", "index": 4, "content_block": {
            "type": "tool_use", "id": "toolu_01", "name": "web_search", "input": {}, "message": "Searching"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 4,
                                 "delta": {"type": "input_json_delta", "partial_json": '{"query": "caf'}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 4,
                                 "delta": {"type": "input_json_delta", "partial_json": '\u00e9"}'}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 4,
                                 "delta": {"type": "tool_use_block_update_delta", "message": "Searched"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 4}),
        ("content_block_start", {"type": "content_block_start", "index": 5, "content_block": {
            "type": "tool_result", "tool_use_id": "toolu_01", "name": "web_search", "content": []}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 5, "delta": {
            "type": "input_json_delta", "partial_json": '[{"type": "text", "text": "NOT THE ANSWER"}]'}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 5}),
        ("content_block_start", {"type": "content_block_start", "index": 6,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 6, "delta": {
            "type": "citation_start_delta", "citation": {"uuid": "cit-1", "url": "https://example.org"}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 6,
                                 "delta": {"type": "text_delta", "text": a[20:]}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 6,
                                 "delta": {"type": "citation_end_delta", "citation_uuid": "cit-1"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 6}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}}),
        ("message_limit", {"type": "message_limit", "message_limit": {
            "type": "within_limit", "resetsAt": None, "remaining": None}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    body = b"".join(f"event: {name}{eol}data: {_dumps(data)}{eol}{eol}".encode() for name, data in e[:3])
    body += f": ping{eol}{eol}".encode()  # an SSE comment ping
    body += b"".join(f"event: {name}{eol}data: {_dumps(data)}{eol}{eol}".encode() for name, data in e[3:])
    return Fixture(body, text=a, reasoning="User greets; answer kindly.",
                   tool_calls=[{"id": "toolu_01", "name": "web_search", "index": 0, "arguments": {"query": "caf\u00e9"}}],
                   finish_reason="end_turn")


def claude_web_legacy() -> Fixture:
    """The older completion events (UCA client.py)."""
    a = ANSWER
    ev = [sse("completion", {"type": "completion", "completion": a[:12], "stop_reason": None, "model": "claude-2"}),
          sse("completion", {"type": "completion", "completion": a[12:], "stop_reason": "stop_sequence",
                             "model": "claude-2"})]
    return Fixture(b"".join(ev), text=a, finish_reason="stop_sequence")


CLAUDE_RATE_LIMIT = {"type": "error", "error": {"type": "rate_limit_error", "message": _dumps(
    {"type": "exceeded_limit", "resetsAt": 1790000000, "remaining": None, "perModelLimit": False})}}


# ---------------------------------------------------------------------------------------
# Gemini web (GAPI parsing.py and client.py, G4F gemini_utils.py)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def google_frame(obj: Any, trailing_inside: bool = True) -> str:
    """`<len>\\n<JSON>\\n`, the length in UTF-16 units counted from just after the digits."""
    text = "\n" + _dumps(obj) + ("\n" if trailing_inside else "")
    return f"{utf16_len(text)}{text}" + ("" if trailing_inside else "\n")


def wrb(payload: Any) -> list[Any]:
    return ["wrb.fr", None, _dumps(payload)]


def gemini_candidate(text: str, thoughts: str | None = None, done: bool = False, rcid: str = "rc_1") -> list[Any]:
    cand: list[Any] = [rcid, [text]] + [None] * 6 + [[2 if done else 1]]
    if thoughts is not None:
        cand += [None] * (37 - len(cand)) + [[[thoughts]]]
    return cand


def gemini_payload(cands: list[Any], final: bool = False, model: str | None = None) -> list[Any]:
    payload: list[Any] = [None, ["c_1", "r_1"], None, None, cands]
    if final or model:
        payload += [None] * (25 - len(payload)) + ["saved" if final else None]
    if model:
        payload += [None] * (42 - len(payload)) + [model]
    return payload


def gemini_web() -> Fixture:
    """)]}' and length-prefixed frames: cumulative thoughts then text, a flicker (a
    closing code fence shown and taken back), a duplicate frame, a sparse payload,
    bookkeeping envelopes, the last frame marked complete."""
    a = ANSWER
    thoughts = "Greeting \U0001f914 noted."
    snaps = [a[:4], a[:12] + "\n```", a[:25], a[:25], a[:40]]
    frames = [
        [wrb(gemini_payload([gemini_candidate("", thoughts[:8])]))],
        [wrb(gemini_payload([gemini_candidate("", thoughts)]))],
        [wrb(gemini_payload([gemini_candidate(snaps[0], thoughts)])), ["di", 120], ["af.httprm", 119, "-123", 7]],
        [wrb(gemini_payload([gemini_candidate(snaps[1], thoughts)]))],
        [wrb(gemini_payload([gemini_candidate(snaps[2], thoughts)]))],
        [wrb(gemini_payload([gemini_candidate(snaps[3], thoughts)]))],  # the same again
        [wrb({"1": ["c_1", "r_1"], "4": [gemini_candidate(snaps[4], thoughts)]})],  # sparse
        [wrb(gemini_payload([gemini_candidate(a, thoughts, done=True)], final=True, model="gemini-x-pro"))],
        [["e", 4, None, None, 2048]],
    ]
    body = ")]}'\n" + "".join(google_frame(f, trailing_inside=i % 2 == 0) for i, f in enumerate(frames))
    return Fixture(body.encode(), text=a, reasoning=thoughts, finish_reason="stop")


def gemini_web_error() -> bytes:
    """An error frame: BardErrorInfo 1037 (usage limit) at envelope[5][2][0][1][0] (GAPI client.py)."""
    err = ["wrb.fr", None, None, None, None,
           [3, None, [["type.googleapis.com/assistant.boq.bard.application.BardErrorInfo", [1037]]]]]
    return (")]}'\n" + google_frame([wrb(gemini_payload([gemini_candidate("Par")]))]) + google_frame([err])).encode()
