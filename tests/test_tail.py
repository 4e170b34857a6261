"""`streamtap tail`: the human view, and the command against a real API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from proxy_core.tailview import TailView

from .support.proc import StreamtapProcess

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


def test_colour_only_when_asked():
    assert "\x1b[" in TailView(colour=True).render({"type": "reasoning.delta", "stream": "a", "text": "hm"})
    assert "\x1b[" not in TailView(colour=False).render({"type": "reasoning.delta", "stream": "a", "text": "hm"})


def test_tail_against_a_running_proxy(tmp_path):
    from .support import fixtures
    from .support.pki import make_pki
    from .support.upstream import Reply, Upstream

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
            outputs = {}
            for flag in ("--json", None):
                tail = subprocess.Popen([str(BIN / "streamtap"), "tail", "--since", "0", "--api-socket",
                                         str(tmp_path / "s.sock"), *([flag] if flag else [])],
                                        stdout=subprocess.PIPE, text=True)
                lines = []
                for line in tail.stdout:
                    lines.append(line)
                    if "stream.end" in line or " end stop" in line:
                        break
                tail.terminate()
                tail.wait(10)
                outputs[flag] = lines
        finally:
            proc.stop()
    events = [json.loads(line) for line in outputs["--json"]]
    assert events[0]["request"]["tag"] == "tail" and events[-1]["type"] == "stream.end"
    human = "".join(outputs[None])
    assert "tag=tail" in human and fx.text in human and "end stop" in human
