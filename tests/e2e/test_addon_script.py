"""`mitmdump -s addons/stream_capture.py` keeps `streamtap run`'s promises: loopback
listening, the CA in certs/, streamtap_config's proxy.listen, and a one-line refusal to
listen elsewhere without proxy authentication."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support import fixtures
from tests.support.pki import make_pki
from tests.support.upstream import Reply, Upstream

from ..support.api_http import get_json

pytestmark = pytest.mark.e2e

MITMDUMP = str(Path(sys.executable).with_name("mitmdump"))
ADDON = str(Path(__file__).resolve().parents[2] / "addons" / "stream_capture.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listeners(port: int) -> set[str]:
    """The local addresses something listens on at `port`, from /proc (IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


class Mitmdump:
    def __init__(self, args: list[str], cwd: Path) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen([MITMDUMP, "-s", ADDON, *args], cwd=cwd, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._read, daemon=True).start()
        assert self.ready.wait(30), self.output

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if "streamtap API listening" in line:
                self.ready.set()
        self.ready.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def test_defaults_loopback_listening_and_the_ca_in_certs(tmp_path):
    port = free_port()
    pki = make_pki(tmp_path / "pki", ["llm.example.test"])
    fx = fixtures.openai_chat_text()
    with Upstream(pki, lambda r: Reply(chunks=[fx.body])) as up:
        dump = Mitmdump(["-p", str(port),
                         "--set", "streamtap_routes=llm.example.test:^/v1/chat=openai",
                         "--set", f"streamtap_connect_to=llm.example.test:443=127.0.0.1:{up.port}",
                         "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}"], cwd=tmp_path)
        try:
            assert listeners(port) == {"0100007F"}, dump.output  # 127.0.0.1 only
            assert re.search(rf"proxy listening at 127\.0\.0\.1:{port}", dump.output), dump.output
            # The CA is streamtap's, in ./certs, so `streamtap env`'s clients verify.
            ca = tmp_path / "certs" / "mitmproxy-ca-cert.pem"
            result = subprocess.run(
                ["curl", "-sS", "--proxy", f"http://127.0.0.1:{port}", "--cacert", str(ca),
                 "https://llm.example.test/v1/chat/completions", "-d", "{}"],
                capture_output=True, timeout=30)
            assert result.stdout == fx.body, result.stderr
            assert (tmp_path / "certs" / "mitmproxy-ca.pem").stat().st_mode & 0o077 == 0
            assert get_json(str(tmp_path / "run" / "streamtap.sock"), "/v1/streams")["streams"]
        finally:
            dump.stop()


def test_streamtap_config_sets_the_listen_address(tmp_path):
    port = free_port()
    config = tmp_path / "streamtap.yaml"
    config.write_text(f"proxy:\n  listen: 127.0.0.1:{port}\ncerts_dir: mycerts\napi:\n  socket: api.sock\n")
    dump = Mitmdump(["--set", f"streamtap_config={config}"], cwd=tmp_path)
    try:
        assert listeners(port) == {"0100007F"}, dump.output
        assert (tmp_path / "mycerts" / "mitmproxy-ca-cert.pem").exists()
        assert get_json(str(tmp_path / "api.sock"), "/healthz")["status"] == "ok"
    finally:
        dump.stop()


@pytest.mark.parametrize("args", [["--listen-host", "0.0.0.0"], ["--mode", "regular@0.0.0.0:{port}"]])
def test_listening_beyond_loopback_without_auth_is_refused_in_one_line(tmp_path, args):
    port = free_port()
    args = [a.format(port=port) for a in args]
    result = subprocess.run([MITMDUMP, "-s", ADDON, "-p", str(port), *args], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    assert "streamtap: the proxy would listen on 0.0.0.0, not loopback; listen with --listen-host " \
           "127.0.0.1 or set proxyauth (USER:PASS)" in output, output
    assert not (tmp_path / "run" / "streamtap.sock").exists()


def test_beyond_loopback_with_proxy_auth_is_allowed(tmp_path):
    port = free_port()
    dump = Mitmdump(["-p", str(port), "--listen-host", "0.0.0.0", "--set", "proxyauth=user:secret"],
                    cwd=tmp_path)
    try:
        assert listeners(port) == {"00000000"}, dump.output
    finally:
        dump.stop()


def test_clients_beyond_loopback_are_turned_away_until_the_proxy_listens_on_loopback():
    from mitmproxy.addons.proxyauth import ProxyAuth
    from mitmproxy.test import taddons, tflow

    from proxy_core.mitm.config_file import ConfigFile

    addon = ConfigFile(standalone=True)
    with taddons.context(addon, ProxyAuth()) as tctx:
        tctx.configure(addon, listen_host="127.0.0.1")
        remote, local = tflow.tclient_conn(), tflow.tclient_conn()
        remote.peername, local.peername = ("192.0.2.7", 50000), ("127.0.0.1", 50001)
        addon.client_connected(remote)
        addon.client_connected(local)
        assert remote.error and not local.error
        tctx.configure(addon, proxyauth="user:secret")
        remote.error = None
        addon.client_connected(remote)
        assert not remote.error
