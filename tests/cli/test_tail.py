"""`streamtap tail`: the human view, and the command against a real API."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from proxy_core.cli.tailview import TailView
from tests.support.proc import StreamtapProcess

BIN = Path(sys.executable).parent


def start(sid: str, tag: str | None = None) -> dict:
    return {"type": "stream.start", "stream": sid, "request": {"method": "POST", "url": f"https://h/{sid}",
                                                               "provider": "openai", "tag": tag}}


def test_interleaved_streams_say_whose_text_follows():
    view = TailView(colour=False)
    out = "".join(view.render(e) for e in [
        start("a", "t1"), {"type": "text.delta", "stream": "a", "text": "Hel"},
        start("b"), {"type": "text.delta", "stream": "b", "text": "Other"},
        {"type": "text.delta", "stream": "a", "text": "lo"},
        {"type": "tool_call", "stream": "a", "name": "f", "arguments": {"x": "é"}},
        {"type": "stream.end", "stream": "a", "finish_reason": "stop", "totals": {"text_chars": 5}},
        {"type": "stream.abort", "stream": "b", "by": "client", "message": "Client disconnected."},
    ])
    assert out == (
        "── a POST https://h/a [openai] tag=t1\nHel\n"
        "── b POST https://h/b [openai]\nOther\n"
        "── a\nlo\n"
        '[tool_call f {"x": "é"}]\n'
        "── a end stop 5 chars\n"
        "── b abort by client Client disconnected.\n"
    )


def test_notices_are_lines_of_their_own_in_words():
    view = TailView(colour=False)
    out = "".join(view.render(e) for e in [
        start("a"), {"type": "text.delta", "stream": "a", "text": "Hel"},
        {"type": "stream.stall", "stream": "a", "seq": 2, "idle": 60.0012},
        {"type": "text.delta", "stream": "a", "text": "lo"},
        {"type": "decode.error", "stream": "a", "seq": 4, "message": "openai: bad JSON", "at_byte": 120},
        {"type": "text.delta", "stream": "a", "text": " there\n"},
        {"type": "gap", "stream": None, "seq": None, "offset": 9, "from": 7, "to": 9},
        {"type": "text.delta", "stream": "a", "text": "again"},
        {"type": "restart", "stream": None, "seq": None, "offset": 0, "instance": "f00d", "last_offset_seen": 12},
        {"type": "cutoff", "stream": None, "seq": None, "offset": 3, "resume_from": 3, "lag": 10001,
         "message": "too slow"},
        {"type": "stream.end", "stream": "a", "finish_reason": "stop", "totals": {"text_chars": 16}},
    ])
    assert out == (
        "── a POST https://h/a [openai]\nHel\n"
        "── a stalled: no bytes for 60 s (the stream goes on)\n"
        "── a\nlo\n"
        "── a decode error at byte 120: openai: bad JSON\n"
        "── a\n there\n"
        "── gap: events 7 to 9 were lost to this reader (no longer in the ring buffer)\n"
        "── a\nagain\n"
        "── restart: streamtap restarted (instance f00d); its events follow from its start\n"
        "── cut off: this reader fell 10001 events behind; resume with --since 3\n"
        "── a end stop 16 chars\n"
    )
    assert "{" not in out


def test_a_line_end_in_coloured_text_still_counts():
    view = TailView(colour=True)
    view.render({"type": "reasoning.delta", "stream": "a", "text": "hm\n"})
    assert view.render({"type": "stream.stall", "stream": "a", "idle": 1}).startswith("\x1b[")


def test_tail_says_where_it_waits_unless_json(tmp_path):
    missing = tmp_path / "none.sock"
    human = subprocess.run([str(BIN / "streamtap"), "tail", "--api-socket", str(missing)],
                           capture_output=True, text=True, timeout=60)
    assert human.returncode == 1 and human.stdout == ""
    assert human.stderr.splitlines()[0] == f"streamtap tail: waiting for streams on unix:{missing} (Ctrl-C stops)"
    raw = subprocess.run([str(BIN / "streamtap"), "tail", "--json", "--api-socket", str(missing)],
                         capture_output=True, text=True, timeout=60)
    assert raw.returncode == 1 and raw.stdout == "" and "waiting" not in raw.stderr


def test_colour_only_when_asked():
    assert "\x1b[" in TailView(colour=True).render({"type": "reasoning.delta", "stream": "a", "text": "hm"})
    assert "\x1b[" not in TailView(colour=False).render({"type": "reasoning.delta", "stream": "a", "text": "hm"})


def test_tail_against_a_running_proxy(tmp_path):
    from tests.support import fixtures
    from tests.support.pki import make_pki
    from tests.support.upstream import Reply, Upstream

    fx = fixtures.openai_chat_text()
    pki = make_pki(tmp_path / "pki", ["api.openai.com"])
    with Upstream(pki, lambda r: Reply(chunks=[fx.body])) as up:
        proc = StreamtapProcess(["--certs", str(tmp_path / "c"), "--api-socket", str(tmp_path / "s.sock"),
                                 "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
                                 "--set", f"streamtap_connect_to=api.openai.com:443=127.0.0.1:{up.port}"],
                                cwd=tmp_path)
        try:
            subprocess.run(["curl", "-sS", "--proxy", proc.proxy_url, "--cacert", str(tmp_path / "c" / "mitmproxy-ca-cert.pem"),
                            "-H", "x-streamtap-tag: tail", "https://api.openai.com/v1/chat/completions", "-d", "{}"],
                           capture_output=True, timeout=30, check=True)
            api = subprocess.run(["curl", "-sS", "--unix-socket", str(tmp_path / "s.sock"),
                                  "http://localhost/v1/events?follow=false&format=ndjson"],
                                 capture_output=True, timeout=30, check=True).stdout
            outputs, errors = {}, {}
            for flag in ("--json", None):
                tail = subprocess.Popen([str(BIN / "streamtap"), "tail", "--since", "0", "--api-socket",
                                         str(tmp_path / "s.sock"), *([flag] if flag else [])],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                lines = []
                for line in tail.stdout:
                    lines.append(line)
                    if b"stream.end" in line or b" end stop" in line:
                        break
                tail.terminate()
                errors[flag] = tail.communicate(timeout=10)[1].decode()
                outputs[flag] = lines
        finally:
            proc.stop()
    assert b"".join(outputs["--json"]) == api  # the API's own bytes, not a re-spaced copy
    events = [json.loads(line) for line in outputs["--json"]]
    assert events[0]["request"]["tag"] == "tail" and events[-1]["type"] == "stream.end"
    human = b"".join(outputs[None]).decode()
    assert "tag=tail" in human and fx.text in human and "end stop" in human
    assert errors[None].startswith(f"streamtap tail: waiting for streams on unix:{tmp_path / 's.sock'}")
    assert "waiting" not in errors["--json"]


# One event of every type docs/events.md documents, with the fields it lists there, and
# the line `tail` prints for it (after its stream's header line).
EVERY_TYPE = {
    "stream.start": ({"request": {"method": "POST", "url": "https://api.openai.com/v1/chat/completions",
                                  "host": "api.openai.com", "path": "/v1/chat/completions", "provider": "openai",
                                  "tag": "t1", "client": "127.0.0.1:50000", "headers": {}},
                      "response": {"status": 200, "headers": {}, "content_type": "text/event-stream",
                                   "content_encoding": None},
                      "transport": "http", "connection": None, "instance": "f00d"},
                     "── a POST https://api.openai.com/v1/chat/completions [openai] tag=t1\n"),
    "text.delta": ({"text": "Hello", "index": 0}, "Hello"),
    "reasoning.delta": ({"text": "Thinking", "index": 0}, "Thinking"),
    "refusal.delta": ({"text": "I can't help with that.", "index": 0}, "[refusal] I can't help with that."),
    "tool_call": ({"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}, "index": 0},
                  '[tool_call get_weather {"city": "Paris"}]\n'),
    "tool_result": ({"id": "srvtoolu_1", "kind": "web_search_tool_result", "index": 0,
                     "content": [{"type": "web_search_result", "title": "Paris weather", "url": "https://w.example/p"}]},
                    '[tool_result web_search_tool_result srvtoolu_1] [{"type": "web_search_result", '
                    '"title": "Paris weather", "url": "https://w.example/p"}]\n'),
    "citation": ({"kind": "web_search_result_location", "index": 0,
                  "data": {"type": "web_search_result_location", "url": "https://w.example/p",
                           "title": "Paris weather", "cited_text": "Sunny, 21 °C", "encrypted_index": "Eo8B"}},
                 "[cite: Paris weather https://w.example/p]\n"),
    "signature": ({"kind": "signature", "value": "EqQBCgIYAh" * 40, "index": 0}, "[signature 400 chars]\n"),
    "media": ({"kind": "inlineData", "mime_type": "image/png", "size": 12 * 1024, "uri": None, "index": 0},
              "[image 12 KB] image/png inlineData\n"),
    "usage": ({"input_tokens": 11, "output_tokens": 22, "total_tokens": 33}, "[usage 11 in · 22 out · 33 total]\n"),
    "frame": ({"event": "message", "data": {"choices": [{"delta": {"content": "Hi"}}]}, "id": None},
              '[frame message] {"choices": [{"delta": {"content": "Hi"}}]}\n'),
    "provider.event": ({"provider_type": "content_block.compaction",
                        "data": {"type": "content_block_start", "index": 1,
                                 "content_block": {"type": "compaction", "content": "Earlier: weather"}}},
                       '[provider.event content_block.compaction] {"type": "content_block_start", "index": 1, '
                       '"content_block": {"type": "compaction", "content": "Earlier: weather"}}\n'),
    "decode.error": ({"message": "openai: bad JSON in a frame", "at_byte": 120},
                     "── a decode error at byte 120: openai: bad JSON in a frame\n"),
    "stream.stall": ({"idle": 60.0}, "── a stalled: no bytes for 60 s (the stream goes on)\n"),
    "stream.end": ({"status": 200, "finish_reason": "stop", "text_sha256": "ab" * 32,
                    "totals": {"events": 9, "wire_bytes": 900, "body_bytes": 900, "text_chars": 5,
                               "reasoning_chars": 8, "tool_calls": 1}},
                   "── a end stop 5 chars\n"),
    "stream.abort": ({"by": "upstream", "message": "Server disconnected.", "totals": {}},
                     "── a abort by upstream Server disconnected.\n"),
    "stream.error": ({"status": 429, "message": "Rate limit reached", "totals": {}},
                     "── a error 429 Rate limit reached\n"),
    # The reader's notices: of no stream.
    "cutoff": ({"stream": None, "seq": None, "offset": 3, "resume_from": 3, "lag": 10001, "message": "too slow"},
               "── cut off: this reader fell 10001 events behind; resume with --since 3\n"),
    "restart": ({"stream": None, "seq": None, "offset": 0, "instance": "f00d", "previous_instance": None,
                 "last_offset_seen": 12, "message": "restarted"},
                "── restart: streamtap restarted (instance f00d); its events follow from its start\n"),
    "gap": ({"stream": None, "seq": None, "offset": 9, "from": 7, "to": 9},
            "── gap: events 7 to 9 were lost to this reader (no longer in the ring buffer)\n"),
}


def documented_types() -> set[str]:
    doc = (Path(__file__).parents[2] / "docs" / "events.md").read_text()
    types = doc.split("\n## Types\n", 1)[1].split("\n## ", 1)[0]  # the section, not the providers' tables
    return set(re.findall(r"^### ([a-z_]+(?:\.[a-z_]+)?)\b", types, re.M)) - {"WebSocket"}


def test_every_documented_type_is_in_the_table_below():
    from proxy_core.payloads import PAYLOADS

    assert set(EVERY_TYPE) == documented_types()
    assert set(PAYLOADS) <= set(EVERY_TYPE)  # every payload the pipeline makes is documented, so shown


@pytest.mark.parametrize("kind", sorted(EVERY_TYPE))
def test_each_type_prints_its_line(kind):
    fields, line = EVERY_TYPE[kind]
    view = TailView(colour=False)
    if kind != "stream.start":
        view.render({"type": "stream.start", "stream": "a", "seq": 0, **EVERY_TYPE["stream.start"][0]})
    event = {"offset": 2, "stream": "a", "seq": 1, "type": kind, "time": 1.5, **fields}
    assert view.render(event) == line
    assert "\n" not in line[:-1]  # one line each (the deltas: inline, with no line end of their own)
    if kind not in ("text.delta", "reasoning.delta"):
        assert "{'" not in line and "None" not in line  # words or JSON, never a Python repr
    coloured = TailView(colour=True)
    coloured.current = "a"
    assert coloured.render(event).replace("\x1b[", "").strip()  # in colour too, never empty


def test_an_unknown_type_prints_a_generic_line():
    view = TailView(colour=False)
    out = "".join(view.render(e) for e in [
        start("a"), {"type": "text.delta", "stream": "a", "text": "Hel"},
        {"type": "thing.new", "stream": "a", "seq": 2, "offset": 3, "time": 1.0, "what": {"x": 1}, "n": None},
        {"type": "text.delta", "stream": "a", "text": "lo"},
        {"type": "notice.new", "stream": None, "seq": None, "offset": 4, "time": 1.0},
        {"type": "text.delta", "stream": "a", "text": "!"},
        {"type": "stream.end", "stream": "a", "finish_reason": "stop"},  # short of its totals: shown as it is
    ])
    assert out == (
        "── a POST https://h/a [openai]\nHel\n"
        '[thing.new] {"what": {"x": 1}, "n": null}\n'
        "lo\n"
        "[notice.new]\n"
        "── a\n!\n"
        '[stream.end] {"finish_reason": "stop"}\n'
    )


def test_a_refusal_is_marked_and_kept_apart_from_the_answer():
    view = TailView(colour=False)
    out = "".join(view.render(e) for e in [
        start("a"), {"type": "text.delta", "stream": "a", "text": "Sure"},
        {"type": "refusal.delta", "stream": "a", "text": "I can't "},
        {"type": "refusal.delta", "stream": "a", "text": "do that."},
        {"type": "text.delta", "stream": "a", "text": "After"},
        {"type": "refusal.delta", "stream": "a", "text": "No"},
        {"type": "usage", "stream": "a", "input_tokens": 1, "output_tokens": None, "total_tokens": None},
        {"type": "refusal.delta", "stream": "a", "text": "pe\n"},
        {"type": "stream.end", "stream": "a", "finish_reason": "stop", "totals": {"text_chars": 9}},
    ])
    assert out == (
        "── a POST https://h/a [openai]\nSure\n"
        "[refusal] I can't do that.\n"
        "After\n"
        "[refusal] No\n"
        "[usage 1 in · ? out · ? total]\n"
        "[refusal] pe\n"
        "── a end stop 9 chars\n"
    )
    assert TailView(colour=True).render({"type": "refusal.delta", "stream": "a", "text": "x"}).count("\x1b[31m") == 1


def test_excerpts_are_short_single_lines_and_name_their_sources():
    view = TailView(colour=False)
    view.current = "a"
    long = view.render({"type": "tool_result", "stream": "a", "id": None, "kind": "codeExecutionResult",
                        "content": {"outcome": "OUTCOME_OK", "output": "line\n" * 100}})
    assert long.startswith('[tool_result codeExecutionResult] {"outcome": "OUTCOME_OK", "output": "line\\nline')
    assert long.endswith("…\n") and len(long) < 200
    frame = view.render({"type": "frame", "stream": "a", "event": "server", "data": "two\nlines\tand  more"})
    assert frame == "[frame server] two lines and more\n"
    # Gemini's grounding names several sources; a chat annotation nests its own.
    grounding = {"groundingChunks": [{"web": {"uri": f"https://s{i}.example", "title": f"S{i}"}} for i in range(5)],
                 "groundingSupports": [{"segment": {"startIndex": 0}, "groundingChunkIndices": [0]}]}
    assert view.render({"type": "citation", "stream": "a", "kind": "groundingMetadata", "data": grounding}) == (
        "[cite: S0 https://s0.example · S1 https://s1.example · S2 https://s2.example · +2 more]\n")
    chat = {"type": "url_citation", "url_citation": {"url": "https://u.example", "title": "U", "start_index": 0}}
    assert view.render({"type": "citation", "stream": "a", "kind": "url_citation", "data": chat}) == (
        "[cite: U https://u.example]\n")
    assert view.render({"type": "citation", "stream": "a", "kind": "char_location",
                        "data": {"type": "char_location", "document_title": "Doc", "start_char_index": 3}}) == (
        "[cite: Doc]\n")
    assert view.render({"type": "citation", "stream": "a", "kind": "x", "data": {"start": 1}}) == (
        '[cite x] {"start": 1}\n')
    # Media without a type or with only a reference; signatures of other kinds.
    assert view.render({"type": "media", "stream": "a", "kind": "partial_image", "mime_type": None, "size": 800,
                        "uri": None}) == "[media 800 B] partial_image\n"
    assert view.render({"type": "media", "stream": "a", "kind": "fileData", "mime_type": "video/mp4", "size": None,
                        "uri": "gs://b/v.mp4"}) == "[video] video/mp4 fileData gs://b/v.mp4\n"
    assert view.render({"type": "media", "stream": "a", "kind": "audio", "mime_type": "audio/wav",
                        "size": 3 * 1024 * 1024 + 1}) == "[audio 3.0 MB] audio/wav audio\n"
    assert view.render({"type": "signature", "stream": "a", "kind": "redacted_thinking", "value": "x" * 7}) == (
        "[signature redacted_thinking 7 chars]\n")
    # A server tool call says so; a custom tool's input shows as sent.
    assert view.render({"type": "tool_call", "stream": "a", "id": "s", "name": "web_search", "arguments": {"q": "x"},
                        "server": True}) == '[tool_call web_search (server) {"q": "x"}]\n'
    assert view.render({"type": "tool_call", "stream": "a", "id": "c", "name": "apply_patch", "arguments": {},
                        "raw_arguments": "*** Begin Patch\n"}) == '[tool_call apply_patch "*** Begin Patch\\n"]\n'


def test_what_comes_from_the_wire_never_drives_the_terminal():
    view = TailView(colour=False)
    out = "".join(view.render(e) for e in [
        start("a"), {"type": "text.delta", "stream": "a", "text": "a\x1b]0;title\x07b\r\nc\ud800"},
        {"type": "provider.event", "stream": "a", "provider_type": "x\x1b[2J", "data": "\x9b31m"},
        {"type": "stream.error", "stream": "a", "status": 500, "message": "two\nlines\x1b[0m"},
    ])
    assert "\x1b" not in out and "\x9b" not in out and "\r" not in out and "\ud800" not in out
    assert out == ("── a POST https://h/a [openai]\na\ufffd]0;title\ufffdb\nc\ufffd\n"
                   "[provider.event x\ufffd[2J] \ufffd31m\n"
                   "── a error 500 two lines\ufffd[0m\n")
    out.encode()  # writable as UTF-8


def test_an_event_short_of_its_fields_is_shown_as_it_is():
    view = TailView(colour=False)
    out = "".join(view.render(e) for e in [
        start("a"), {"type": "text.delta", "stream": "a", "text": "Hel"},
        {"type": "tool_call", "stream": "b", "name": "f"},  # another stream's, with no arguments
        {"type": "text.delta", "stream": "a", "text": None},  # nothing to show
        {"type": "text.delta", "stream": "a", "text": "lo"},
        {"type": "usage", "stream": "a", "input_tokens": 1},
    ])
    assert out == ('── a POST https://h/a [openai]\nHel\n[tool_call] {"name": "f"}\n'
                   "── a\nlo\n[usage 1 in · ? out · ? total]\n")
