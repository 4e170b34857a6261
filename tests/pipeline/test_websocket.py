"""The per-message WebSocket pipeline, pure: messages in, (answer, payload) out."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from proxy_core.payloads import DecodeError, Frame, StreamAbort, StreamEnd, StreamError, TextDelta
from proxy_core.pipeline.websocket import Answer, Out, WebSocketTap, request_summary
from tests.support import fixtures
from tests.support import websocket as ws
from tests.support.websocket import dumps


class Recorder:
    """What the addon does with the tap's output, without a hub: one list per answer,
    checked against the rules every stream keeps."""

    def __init__(self) -> None:
        self.streams: dict[int, list] = {}
        self.summaries: dict[int, dict] = {}
        self.answers: dict[int, Answer] = {}

    def take(self, out: list[Out]) -> None:
        for answer, payload in out:
            if payload is None:
                assert answer.number not in self.streams, "an answer opened twice"
                self.streams[answer.number] = []
                self.summaries[answer.number] = answer.summary
                self.answers[answer.number] = answer
                continue
            events = self.streams[answer.number]  # opened before its first payload
            assert not (events and events[-1].terminal), "a payload after the terminal event"
            events.append(payload)

    def text(self, number: int) -> str:
        return "".join(p.text for p in self.streams[number] if isinstance(p, TextDelta))

    def terminal(self, number: int):
        events = self.streams[number]
        assert events and events[-1].terminal and sum(p.terminal for p in events) == 1
        return events[-1]


def converse(tap: WebSocketTap, messages: list[tuple[bool, dict]], rec: Recorder | None = None) -> Recorder:
    rec = rec or Recorder()
    rec.take(tap.start())
    for from_client, obj in messages:
        rec.take(tap.message(from_client, dumps(obj)))
    return rec


def server(events: list[dict]) -> list[tuple[bool, dict]]:
    return [(False, e) for e in events]


def test_one_answer_through_the_responses_normalizer():
    fx = fixtures.openai_responses()
    tap = WebSocketTap("openai")
    rec = converse(tap, [(True, ws.response_create()), *server(ws.responses_events(fx))])
    assert list(rec.streams) == [0]
    events = rec.streams[0]
    assert rec.text(0) == fx.text
    assert "".join(p.text for p in events if p.type == "reasoning.delta") == fx.reasoning
    assert [p.fields() for p in events if p.type == "tool_call"] == fx.tool_calls
    assert [p.fields() for p in events if p.type == "usage"] == [fx.usage]
    end = rec.terminal(0)
    assert isinstance(end, StreamEnd) and end.status == 101 and end.finish_reason == "completed"
    assert end.text_sha256 == hashlib.sha256(fx.text.encode()).hexdigest()
    assert end.totals["events"] == len(events) + 1  # with stream.start
    assert end.totals["text_chars"] == len(fx.text) and end.totals["tool_calls"] == 1
    assert not tap.active


def test_the_summary_names_the_request_but_never_its_prompt():
    create = ws.response_create(model="gpt-5.2-codex", previous="resp_0", prompt="TOP SECRET",
                                stream_id="lane-1", prompt_cache_key="thread-9")
    summary = request_summary(create, "response.create")
    assert summary == {"type": "response.create", "model": "gpt-5.2-codex", "previous_response_id": "resp_0",
                       "stream_id": "lane-1", "prompt_cache_key": "thread-9", "tool_count": 2, "input_items": 1,
                       "stream": True}
    assert "SECRET" not in repr(summary) and "preamble" not in repr(summary)


@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=30),
       st.lists(st.sampled_from(["processed", "rate", "timing", "ping"]), max_size=6))
def test_any_split_of_the_text_into_messages(parts, noise):
    """However the text is cut into deltas, and whatever else rides on the socket between
    them, the answer's text is exactly the text sent."""
    events = ws.text_answer(parts)
    messages: list[tuple[bool, dict]] = [(True, ws.response_create())]
    extras = {
        "processed": (True, {"type": "response.processed", "response_id": "resp_0"}),
        "rate": (False, {"type": "codex.rate_limits", "primary": {"used_percent": 3.0}}),
        "timing": (False, {"type": "responsesapi.websocket_timing", "timing_metrics": {}}),
        "ping": (True, {"type": "response.processed", "response_id": "x"}),
    }
    for i, e in enumerate(events):
        messages.append((False, e))
        if i < len(noise):
            messages.append(extras[noise[i]])
    rec = converse(WebSocketTap("openai"), messages)
    assert list(rec.streams) == [0]
    assert rec.text(0) == "".join(parts)
    assert isinstance(rec.terminal(0), StreamEnd)


def test_answers_in_turn_on_one_connection_are_streams_of_their_own():
    tap = WebSocketTap("openai")
    messages = []
    for n in range(3):
        messages.append((True, ws.response_create(previous=f"resp_{n - 1}" if n else None)))
        messages += server(ws.text_answer([f"answer {n}", "!"], response_id=f"resp_{n}"))
        messages.append((True, {"type": "response.processed", "response_id": f"resp_{n}"}))
    rec = converse(tap, messages)
    assert [rec.text(n) for n in range(3)] == ["answer 0!", "answer 1!", "answer 2!"]
    assert rec.summaries[1]["previous_response_id"] == "resp_0"
    assert all(isinstance(rec.terminal(n), StreamEnd) for n in range(3))


@given(st.data())
def test_interleaved_answers_on_two_connections_never_mix(data):
    taps = {"a": WebSocketTap("openai"), "b": WebSocketTap("openai")}
    recs = {k: Recorder() for k in taps}
    scripts = {}
    for k in taps:
        parts = data.draw(st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=10), label=k)
        scripts[k] = [(True, ws.response_create())] + server(ws.text_answer([f"{k}:", *parts]))
    expected = {k: "".join(e["delta"] for _, e in s if e.get("type") == "response.output_text.delta")
                for k, s in scripts.items()}
    order = data.draw(st.permutations(["a"] * len(scripts["a"]) + ["b"] * len(scripts["b"])))
    for k in order:
        from_client, obj = scripts[k].pop(0)
        recs[k].take(taps[k].message(from_client, dumps(obj)))
    for k in taps:
        assert list(recs[k].streams) == [0]
        assert recs[k].text(0) == expected[k]
        assert isinstance(recs[k].terminal(0), StreamEnd)


def test_lanes_by_stream_id_keep_concurrent_answers_apart():
    tap = WebSocketTap("openai")
    one = ws.text_answer(["one", " lane"], response_id="r1", stream_id="s1")
    two = ws.text_answer(["two", " lane"], response_id="r2", stream_id="s2")
    messages = [(True, ws.response_create(stream_id="s1")), (True, ws.response_create(stream_id="s2"))]
    for a, b in zip(one, two, strict=True):
        messages += [(False, b), (False, a)]
    rec = converse(tap, messages)
    assert rec.text(0) == "one lane" and rec.text(1) == "two lane"


def test_a_warmup_is_recorded_as_one_and_ends_cleanly():
    tap = WebSocketTap("openai")
    rec = converse(tap, [(True, ws.response_create(generate=False)), *server(ws.warmup_answer()),
                         (True, ws.response_create()), *server(ws.text_answer(["real"]))])
    assert rec.summaries[0]["warmup"] is True and rec.summaries[0]["generate"] is False
    assert "warmup" not in rec.summaries[1]
    assert rec.text(0) == "" and isinstance(rec.terminal(0), StreamEnd)
    assert rec.text(1) == "real"


def all_messages() -> list[tuple[bool, dict]]:
    return [(True, ws.response_create()), *server(ws.responses_events())]


@given(st.integers(0, len(all_messages())), st.booleans(), st.sampled_from([1000, 1001, 1006, 1011, None]))
def test_a_close_at_any_point_aborts_the_answer_in_flight_naming_the_side(cut, by_client, code):
    messages = all_messages()
    tap = WebSocketTap("openai")
    rec = converse(tap, messages[:cut])
    rec.take(tap.close(by_client, code, "bye"))
    rec.take(tap.message(False, dumps(ws.text_answer(["late"])[0])))  # after the close: nothing
    if cut == 0:
        assert rec.streams == {}
        return
    end = rec.terminal(0)
    if cut == len(messages):
        assert isinstance(end, StreamEnd)
    else:
        assert isinstance(end, StreamAbort) and end.by == ("client" if by_client else "upstream")
        assert end.totals["events"] == len(rec.streams[0]) + 1
        sent = "".join(e.get("delta", "") for _, e in messages[:cut] if e["type"] == "response.output_text.delta")
        assert rec.text(0) == sent  # nothing lost, nothing invented before the abort


def test_an_error_event_ends_the_answer_with_its_status():
    tap = WebSocketTap("openai")
    error = {"type": "error", "status": 400, "error": {"type": "invalid_request_error",
                                                        "code": "websocket_connection_limit_reached",
                                                        "message": "Responses websocket connection limit reached"}}
    rec = converse(tap, [(True, ws.response_create()), (False, ws.text_answer(["x"])[0]), (False, error)])
    end = rec.terminal(0)
    assert isinstance(end, StreamError) and end.status == 400 and "limit reached" in end.message
    # An error with no answer in flight gets a stream of its own, never the next answer's.
    rec.take(tap.message(False, dumps({"type": "error", "error": {"message": "idle"}})))
    assert isinstance(rec.terminal(1), StreamError) and rec.terminal(1).status == 101
    rec.take(tap.message(True, dumps(ws.response_create())))
    for e in ws.text_answer(["fine"]):
        rec.take(tap.message(False, dumps(e)))
    assert rec.text(2) == "fine" and isinstance(rec.terminal(2), StreamEnd)


def test_failed_and_incomplete_end_their_answer():
    tap = WebSocketTap("openai")
    failed = {"type": "response.failed", "response": {"id": "r", "status": "failed",
                                                      "error": {"code": "server_error", "message": "boom"}}}
    incomplete = {"type": "response.incomplete", "response": {
        "id": "r2", "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}}
    rec = converse(tap, [(True, ws.response_create()), (False, failed),
                         (True, ws.response_create()), (False, incomplete)])
    assert isinstance(rec.terminal(0), StreamError) and rec.terminal(0).message == "boom"
    assert isinstance(rec.terminal(1), StreamEnd) and rec.terminal(1).finish_reason == "max_output_tokens"


def test_bad_messages_are_decode_errors_of_the_answer_and_it_goes_on():
    tap = WebSocketTap("openai", max_event_bytes=500)
    rec = Recorder()
    rec.take(tap.message(True, dumps(ws.response_create())))
    rec.take(tap.message(False, b"{not json"))
    rec.take(tap.message(False, b"[1, 2]"))
    rec.take(tap.message(False, b"\x00\x01", is_text=False))
    rec.take(tap.message(False, dumps({"type": "response.output_text.delta", "delta": "x" * 600})))
    for e in ws.text_answer(["ok"]):
        rec.take(tap.message(False, dumps(e)))
    errors = [p for p in rec.streams[0] if isinstance(p, DecodeError)]
    assert len(errors) == 3 and "over the 500-byte limit" in errors[2].message
    assert rec.text(0) == "ok"
    end = rec.terminal(0)
    assert isinstance(end, StreamEnd) and end.totals["binary_messages"] == 1


def test_a_request_too_large_to_read_still_opens_its_answer():
    tap = WebSocketTap("openai", max_event_bytes=400)
    rec = Recorder()
    rec.take(tap.message(True, dumps(ws.response_create(prompt="x" * 500))))
    for e in ws.text_answer(["big"]):
        rec.take(tap.message(False, dumps(e)))
    assert rec.summaries[0]["too_large"] is True and rec.text(0) == "big"


def test_realtime_text_transcripts_tools_usage_and_audio_counted():
    tap = WebSocketTap("openai-realtime", model="gpt-realtime")
    audio = bytes(range(256)) * 10
    messages = [
        (False, {"type": "session.created", "event_id": "e0", "session": {}}),
        (True, {"type": "session.update", "session": {"type": "realtime", "model": "gpt-realtime"}}),
        (True, {"type": "response.create", "response": {"output_modalities": ["text"], "tools": [{}]}}),
        *server(ws.realtime_answer("r1", ("Hel", "lo"))),
        *server(ws.realtime_answer("r2", ("spo", "ken"), transcript=True, audio=audio)),
    ]
    rec = converse(tap, messages)
    assert rec.text(0) == "Hello" and rec.text(1) == "spoken"
    assert rec.summaries[0] == {"type": "response.create", "model": "gpt-realtime", "tool_count": 1}
    assert rec.summaries[1]["model"] == "gpt-realtime"
    for n in (0, 1):
        calls = [p.fields() for p in rec.streams[n] if p.type == "tool_call"]
        assert calls == [{"id": "call_1", "name": "weather", "arguments": {"city": "Zürich"}, "index": 0}]
        assert [p.fields() for p in rec.streams[n] if p.type == "usage"] == [
            {"input_tokens": 60, "output_tokens": 30, "total_tokens": 90}]
    end = rec.terminal(1)
    assert isinstance(end, StreamEnd) and end.finish_reason == "completed"
    assert end.totals["audio_bytes"] == len(audio)
    assert not any("AAEC" in repr(p) for p in rec.streams[1])  # the audio itself is never in an event


def test_realtime_parallel_answers_and_a_cancel_mid_answer():
    tap = WebSocketTap("openai-realtime")
    one, two = ws.realtime_answer("r1", ("a", "b")), ws.realtime_answer("r2", ("c", "d"))
    messages = []
    for a, b in zip(one, two, strict=True):
        messages += [(False, a), (False, b)]
    rec = converse(tap, messages)
    assert rec.text(0) == "ab" and rec.text(1) == "cd"
    rec.take(tap.message(False, dumps(ws.realtime_answer("r3")[0])))
    rec.take(tap.message(False, dumps({"type": "response.done", "response": {
        "id": "r3", "status": "cancelled", "status_details": {"reason": "client_cancelled"}}})))
    assert rec.terminal(2).finish_reason == "client_cancelled"
    rec.take(tap.message(False, dumps(ws.realtime_answer("r4")[0])))
    rec.take(tap.close(False, 1006))
    assert isinstance(rec.terminal(3), StreamAbort) and rec.terminal(3).by == "upstream"


def test_realtime_error_for_a_waiting_request_and_errors_of_the_session():
    tap = WebSocketTap("openai-realtime")
    rec = converse(tap, [
        (True, {"type": "response.create", "response": {}}),
        (False, {"type": "error", "event_id": "e1", "error": {"type": "invalid_request_error", "message": "nope"}}),
        (False, ws.realtime_answer("r1")[0]),
        (False, {"type": "error", "event_id": "e2", "error": {"message": "bad item"}}),
        *server(ws.realtime_answer("r1")[1:]),
    ])
    assert isinstance(rec.terminal(0), StreamError) and rec.terminal(0).message == "nope"
    assert rec.summaries[0]["type"] == "response.create"
    assert isinstance(rec.terminal(2), StreamError)  # the session's error: its own stream
    assert rec.text(1) == "Hello wörld" and isinstance(rec.terminal(1), StreamEnd)  # untouched by it


def test_ws_json_frames_every_text_message_and_counts_binary():
    tap = WebSocketTap("ws-json")
    rec = Recorder()
    rec.take(tap.start())
    rec.take(tap.message(True, b'{"op": "subscribe"}'))
    rec.take(tap.message(False, "plain text ✓".encode()))
    rec.take(tap.message(False, b"\x00" * 50, is_text=False))
    rec.take(tap.close(True, 1000))
    events = rec.streams[0]
    assert [p for p in events if isinstance(p, Frame)] == [Frame("client", {"op": "subscribe"}),
                                                          Frame("server", "plain text ✓")]
    end = rec.terminal(0)
    assert isinstance(end, StreamEnd) and end.totals["binary_messages"] == 1 and end.totals["messages"] == 3
    tap2 = WebSocketTap("ws-json")
    rec2 = Recorder()
    rec2.take(tap2.start())
    rec2.take(tap2.close(False, 1006))
    assert isinstance(rec2.terminal(0), StreamAbort) and rec2.terminal(0).by == "upstream"


def test_the_proxy_shutting_down_aborts_what_is_open():
    tap = WebSocketTap("openai")
    rec = converse(tap, [(True, ws.response_create()), (False, ws.text_answer(["x"])[0])])
    rec.take(tap.abort("proxy", "streamtap shut down"))
    assert isinstance(rec.terminal(0), StreamAbort) and rec.terminal(0).by == "proxy"
    assert tap.abort("proxy", "again") == [] and tap.close(True, 1000) == []


SKIPPED = "the decoder process fell behind: 3 WebSocket messages (120 bytes) were not decoded"


def test_a_skip_aborts_the_open_answer_and_its_tail_never_runs_into_the_next():
    tap = WebSocketTap("openai")
    first = ws.text_answer(["kept ", "lost", " tail"], response_id="resp_1")
    rec = converse(tap, [(True, ws.response_create()), *server(first[:3])])
    rec.take(tap.skip(3, 120, "the decoder process fell behind"))
    rec.take(sum((tap.message(False, dumps(e)) for e in first[5:]), []))  # the rest of the old answer
    converse(tap, [(True, ws.response_create()), *server(ws.text_answer(["next"], response_id="resp_2"))], rec)
    errors = [p for p in rec.streams[0] if isinstance(p, DecodeError)]
    assert [e.message for e in errors] == [SKIPPED]
    abort = rec.terminal(0)
    assert isinstance(abort, StreamAbort) and abort.by == "proxy" and abort.message == SKIPPED
    assert rec.text(0) == "kept " and rec.text(1) == "next" and sorted(rec.streams) == [0, 1]
    assert isinstance(rec.terminal(1), StreamEnd)
    assert tap.messages == 1 + 3 + 3 + len(first) - 5 + 1 + 4


def test_a_skip_with_lanes_drops_each_lanes_tail_until_its_end():
    tap = WebSocketTap("openai")
    a = ws.text_answer(["a1", "a2"], response_id="resp_a", stream_id="A")
    rec = converse(tap, [(True, ws.response_create(stream_id="A")), *server(a[:3])])
    rec.take(tap.skip(3, 120, "the decoder process fell behind"))
    rec.take(sum((tap.message(False, dumps(e)) for e in a[3:]), []))
    assert sorted(rec.streams) == [0]  # the tail opened no stream of its own
    converse(tap, [(True, ws.response_create(stream_id="A")), *server(ws.text_answer(["b"], stream_id="A"))], rec)
    assert rec.text(0) == "a1" and rec.text(1) == "b" and isinstance(rec.terminal(1), StreamEnd)


def test_a_skip_in_realtime_drops_the_aborted_answers_late_events():
    tap = WebSocketTap("openai-realtime")
    one = ws.realtime_answer("resp_1", parts=("Hel", "lo"))
    rec = converse(tap, server(one[:2]))
    rec.take(tap.skip(3, 120, "the decoder process fell behind"))
    rec.take(sum((tap.message(False, dumps(e)) for e in one[2:]), []))
    converse(tap, server(ws.realtime_answer("resp_2", parts=("new",))), rec)
    assert sorted(rec.streams) == [0, 1] and rec.text(0) == "Hel" and rec.text(1) == "new"
    assert isinstance(rec.terminal(0), StreamAbort) and isinstance(rec.terminal(1), StreamEnd)


def test_a_skip_on_ws_json_is_a_decode_error_and_the_stream_goes_on():
    tap = WebSocketTap("ws-json")
    rec = Recorder()
    rec.take(tap.start())
    rec.take(tap.skip(3, 120, "the decoder process fell behind"))
    rec.take(tap.message(False, b'{"after": 1}'))
    rec.take(tap.close(True, 1000))
    assert [type(p) for p in rec.streams[0]] == [DecodeError, Frame, StreamEnd]
    assert rec.streams[0][0].message == SKIPPED and rec.terminal(0).totals["messages"] == 4
    assert tap.skip(1, 1, "late") == []  # closed: nothing more


def test_memory_per_connection_is_bounded_by_the_answers_in_flight():
    tap = WebSocketTap("openai")
    rec = Recorder()
    for _ in range(200):
        rec.take(tap.message(True, dumps(ws.response_create())))
        for e in ws.text_answer(["a", "b"]):
            rec.take(tap.message(False, dumps(e)))
    assert tap.answers == 200 and tap.active == [] and all(not q for q in tap._lanes.values())


def test_tail_labels_websocket_answers_and_warmups():
    from proxy_core.cli.tailview import TailView

    view = TailView(colour=False)
    start = {"type": "stream.start", "stream": "s1", "transport": "websocket", "connection": "c1",
             "request": {"method": "GET", "url": "https://api.openai.com/v1/responses", "provider": "openai",
                         "tag": None, "answer": 0, "warmup": True}}
    assert view.render(start) == "── s1 GET https://api.openai.com/v1/responses [openai] WebSocket c1 #0 warm-up\n"
