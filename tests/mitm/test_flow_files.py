"""Flows captured by streamtap stay ordinary mitmproxy flows: they save, load, copy and
replay with the addons loaded (no live object sits in flow.metadata), and `streamtap
replay` reads a flow file that streamtap itself wrote."""

from __future__ import annotations

import json
import pickle
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from mitmproxy import io
from mitmproxy.test import taddons, tflow

from proxy_core.hub.hub import Hub
from proxy_core.mitm import Routing, StreamCapture
from tests.support import fixtures
from tests.support.pki import make_pki
from tests.support.proc import StreamtapProcess
from tests.support.upstream import Reply, Upstream

CHAT = fixtures.openai_chat_text()
HOST = "api.openai.com"
BIN = Path(sys.executable).parent


def test_a_tapped_flow_saves_loads_copies_and_pickles(tmp_path):
    hub = Hub()
    routing, capture = Routing(), StreamCapture(hub)
    with taddons.context(routing, capture):
        f = tflow.tflow(resp=True)
        f.request.host = HOST
        f.request.path = "/v1/chat/completions"
        f.response.headers["content-type"] = "text/event-stream"
        routing.requestheaders(f)
        capture.responseheaders(f)
        mid_stream = f.copy()  # mitmweb's Duplicate, while the answer still streams
        f.response.stream(CHAT.body[:300])
        pickle.dumps(f.metadata)
        f.response.stream(CHAT.body[300:])
        f.response.stream(b"")
        capture.response(f)
        copy = f.copy()
        with (tmp_path / "flows.mitm").open("wb") as out:
            io.FlowWriter(out).add(f)
        loaded = list(io.FlowReader((tmp_path / "flows.mitm").open("rb")).stream())
    assert [g.metadata for g in (mid_stream, copy, *loaded)] == [f.metadata] * 3
    assert all(isinstance(v, str) for v in f.metadata.values())
    record = hub.streams[f.metadata["streamtap.stream"]]
    assert "".join(record.text) == CHAT.text and record.state == "ended"


@pytest.mark.e2e
def test_streamtap_replays_the_flow_file_it_wrote(tmp_path):
    pki = make_pki(tmp_path / "pki", [HOST])
    flows = tmp_path / "saved.mitm"
    with Upstream(pki, lambda request: Reply(chunks=[CHAT.body[i:i + 50] for i in range(0, len(CHAT.body), 50)])) as up:
        proc = StreamtapProcess(
            ["--certs", str(tmp_path / "certs"), "--api-socket", str(tmp_path / "api.sock"),
             "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
             "--set", f"streamtap_connect_to={HOST}:443=127.0.0.1:{up.port}",
             "--set", f"save_stream_file={flows}", "--set", "store_streamed_bodies=true"],
            cwd=tmp_path,
        )
        try:
            ctx = ssl.create_default_context(cafile=str(tmp_path / "certs" / "mitmproxy-ca-cert.pem"))
            with httpx.Client(proxy=proc.proxy_url, verify=ctx, timeout=30) as client:
                for _ in range(2):
                    assert client.post(f"https://{HOST}/v1/chat/completions", content=b"{}").content == CHAT.body
        finally:
            assert proc.stop() == 0
    assert "cannot pickle" not in proc.output and "Traceback" not in proc.output, proc.output
    result = subprocess.run([str(BIN / "streamtap"), "replay", str(flows)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    streams = list(dict.fromkeys(e["stream"] for e in events))
    assert len(streams) == 2
    for sid in streams:
        mine = [e for e in events if e["stream"] == sid]
        assert "".join(e["text"] for e in mine if e["type"] == "text.delta") == CHAT.text
        assert mine[-1]["type"] == "stream.end"
