"""`streamtap tail`: the human view, and the command against a real API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
