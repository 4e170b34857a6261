"""The command line and the standalone mitmdump script, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import fixtures
from tests.support.pki import make_pki
from tests.support.subscriber import EventLog, text_of
from tests.support.upstream import Reply, Upstream

from ..support.api_http import get_json

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def streamtap(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "streamtap"), *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_ca_path_and_show_with_certs_dir(tmp_path):
    certs = tmp_path / "mycerts"
    for action in ("path", "show", "export"):  # read-only: a mistyped --certs makes no CA
        missing = streamtap("ca", action, "--certs", str(tmp_path / "mycert"))
        assert missing.returncode == 1 and f"no CA in {(tmp_path / 'mycert').resolve()}" in missing.stderr
        assert not (tmp_path / "mycert").exists()
    assert streamtap("env", "--certs", str(certs)).returncode == 0  # env (as run) makes it
    result = streamtap("ca", "path", "--certs", str(certs))
    assert result.returncode == 0
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path == (certs / "mitmproxy-ca-cert.pem").resolve() and path.exists()
    assert (certs / "mitmproxy-ca.pem").stat().st_mode & 0o777 == 0o600
    assert certs.stat().st_mode & 0o777 == 0o700
    show = streamtap("ca", "show", "--certs", str(certs))
    assert "CN=streamtap local CA" in show.stdout
    assert "sha256:" in show.stdout and "expires:" in show.stdout
    # The same CA on a second call: created once.
    assert streamtap("ca", "show", "--certs", str(certs)).stdout == show.stdout


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("routes:\n  - {host: api.x.com, provider: nope}\n", "routes[0].provider: unknown provider 'nope'"),
        ("proxy: {listen: 0.0.0.0:8080}\n", "proxy.listen: 0.0.0.0 is not loopback"),
        ("proxy: {listen: nowhere}\n", "proxy.listen: 'nowhere' is not HOST:PORT"),
        ("capture: {buffer_events: -1}\n", "capture.buffer_events: must be greater than 0"),
        ("capture: {max_message_chars: -1}\n", "capture.max_message_chars: must be 0 or more"),
        ("hub: {buffer_events: 0}\n", "hub.buffer_events: must be greater than 0"),
        ("hub: {max_message_chars: 5}\ncapture: {max_message_chars: 6}\n",
         "hub.max_message_chars: also given as capture.max_message_chars (its old name): keep one"),
        ("capture: {decode_window: 2}\n", "capture.decode_window: must be between 0 and 0.1 seconds"),
        ("colour: blue\n", "colour: unknown key"),
        ("api: [1, 2]\n", "api: must be a mapping"),
        ("routes:\n  - {host: 'a.com', path: '([', provider: sse}\n", "routes[0].path: invalid regular expression"),
        ("connect_to: {'a.com': 'b:1'}\n", "connect_to: 'a.com=b:1': 'a.com' is not HOST:PORT"),
        ("proxy: {listen: [\n", "not valid YAML at line"),
        ("capture: {max_event_bytes: 100}\n", "capture.max_event_bytes: must be at least 1024"),
        ("proxy: {upstream_proxy: [ftp://p:1]}\n", "proxy.upstream_proxy: 'ftp://p:1' is not an http:// or https://"),
        ("routes:\n  - {host: a.com, provider: sse, via: 5}\n", "routes[0].via: a proxy URL, a list of them, or 'direct'"),
        ("proxy: {auth: nocolon}\n", "proxy.auth: expected USER:PASS"),
        ("ca: {name_constraints: maybe}\n", "ca.name_constraints: must be true or false"),
        ("capture: {decoder_process: sometimes}\n", "capture.decoder_process: must be one of auto, on, off"),
    ],
)
def test_bad_config_is_refused_with_one_line_naming_the_key(tmp_path, yaml_text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    result = streamtap("run", "--config", str(cfg), "--certs", str(tmp_path / "c"), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_bad_flags_are_refused(tmp_path):
    result = streamtap("run", "--route", "x.com=unknown", cwd=tmp_path)
    assert result.returncode == 2 and "--route: route 'x.com=unknown': provider: unknown provider" in result.stderr
    result = streamtap("run", "--proxy-auth", "nocolon", cwd=tmp_path)
    assert result.returncode == 2 and "--proxy-auth: expected USER:PASS" in result.stderr
    result = streamtap("run", "--set", "streamtap_buffer_events=0", "--certs", str(tmp_path / "c"),
                       "--api-socket", str(tmp_path / "s.sock"), cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == (
        "streamtap: streamtap_buffer_events: must be at least 1"
    )


def test_env_prints_exports(tmp_path):
    result = streamtap("env", "--certs", str(tmp_path / "c"), "--listen", "127.0.0.1:9999")
    assert "export HTTPS_PROXY=http://127.0.0.1:9999" in result.stdout
    assert f"export SSL_CERT_FILE={(tmp_path / 'c' / 'streamtap-ca-bundle.pem').resolve()}" in result.stdout
    assert f"export NODE_EXTRA_CA_CERTS={(tmp_path / 'c' / 'mitmproxy-ca-cert.pem').resolve()}" in result.stdout
    assert "NODE_EXTRA_CA_CERTS" in result.stdout


def test_mitmdump_runs_the_addon_script_on_its_own(tmp_path):
    """`mitmdump -s addons/stream_capture.py --set streamtap_...`: no streamtap command involved."""
    pki = make_pki(tmp_path / "pki", ["llm.example.test"])
    fx = fixtures.openai_chat_text()
    sock = tmp_path / "tap.sock"
    with Upstream(pki, lambda r: Reply(chunks=[fx.body[i:i + 9] for i in range(0, len(fx.body), 9)])) as up:
        proc = subprocess.Popen(
            [str(BIN / "mitmdump"), "--listen-host", "127.0.0.1", "-p", "0",
             "-s", str(ROOT / "addons" / "stream_capture.py"),
             "--set", f"confdir={tmp_path / 'certs'}",
             "--set", f"streamtap_api_socket={sock}",
             "--set", "streamtap_routes=llm.example.test:^/v1/chat=openai",
             "--set", f"streamtap_connect_to=llm.example.test:443=127.0.0.1:{up.port}",
             "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        )
        try:
            port = None
            assert proc.stdout is not None
            for line in proc.stdout:
                if "proxy listening at" in line:
                    port = int(line.rsplit(":", 1)[1].rstrip(".\n"))
                if "streamtap API listening" in line and port:
                    break
            assert port, "mitmdump did not start"
            log = EventLog(str(sock), since=0)
            result = subprocess.run(
                ["curl", "-sS", "--proxy", f"http://127.0.0.1:{port}", "--cacert",
                 str(tmp_path / "certs" / "mitmproxy-ca-cert.pem"), "-H", "x-streamtap-tag: standalone",
                 "https://llm.example.test/v1/chat/completions", "-d", "{}"],
                capture_output=True, timeout=30,
            )
            assert result.stdout == fx.body, result.stderr
            events = log.stream_of("standalone")
            assert text_of(events) == fx.text and events[-1]["type"] == "stream.end"
            assert get_json(str(sock), "/healthz")["status"] == "ok"
        finally:
            proc.terminate()
            proc.wait(15)
    assert not sock.exists()  # removed on shutdown


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_run_on_either_event_loop_with_json_logs(tmp_path, loop):
    from tests.support.proc import StreamtapProcess

    proc = StreamtapProcess(["--certs", str(tmp_path / "c"), "--api-socket", str(tmp_path / "s.sock"),
                             "--loop", loop, "--log-format", "json"], cwd=tmp_path)
    try:
        assert get_json(str(tmp_path / "s.sock"), "/healthz")["status"] == "ok"
    finally:
        proc.stop()
    records = [json.loads(line) for line in proc.lines if line.startswith("{")]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any(r["message"] == f"streamtap: event loop {loop}" for r in records)
    assert any("proxy listening at" in r["message"] for r in records)


def test_sigint_shuts_down_cleanly(tmp_path):
    import signal

    from tests.support.proc import StreamtapProcess

    proc = StreamtapProcess(["--certs", str(tmp_path / "c"), "--api-socket", str(tmp_path / "s.sock")], cwd=tmp_path)
    assert (tmp_path / "s.sock").exists()
    assert proc.stop(signal.SIGINT) == 0
    assert not (tmp_path / "s.sock").exists()


def test_hub_settings_have_their_own_section_and_the_old_keys_still_work():
    from proxy_core.config.settings import config_from_dict

    new = config_from_dict({"hub": {"buffer_events": 500, "max_message_chars": 9}})
    old = config_from_dict({"capture": {"buffer_events": 500, "max_message_chars": 9}})
    assert (new.buffer_events, new.max_message_chars) == (old.buffer_events, old.max_message_chars) == (500, 9)
    assert new.to_options()["streamtap_buffer_events"] == 500


def test_decoder_process_takes_yamls_bare_on_and_off():
    import yaml

    from proxy_core.config.settings import config_from_dict

    for text, mode in (("on", "on"), ("off", "off"), ("auto", "auto"), ("'on'", "on")):
        cfg = config_from_dict(yaml.safe_load(f"capture: {{decoder_process: {text}}}"))
        assert cfg.to_options()["streamtap_decoder_process"] == mode
    assert config_from_dict({}).to_options()["streamtap_decoder_process"] == "auto"
