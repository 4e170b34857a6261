"""Upstream proxies: streamtap reaches the provider through another proxy process, with
credentials, fails over when that proxy stops, and honours a per-route `direct`."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.support import fixtures
from tests.support.pki import make_pki
from tests.support.proc import StreamtapProcess
from tests.support.subscriber import EventLog, text_of
from tests.support.upstream import Reply, Upstream

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
CHAT = fixtures.openai_chat_text()


class Mitmdump:
    """A plain mitmdump as the upstream proxy: tunnels everything (no interception),
    requires credentials, and logs each client connection."""

    def __init__(self, cwd: Path, auth: str) -> None:
        cwd.mkdir(parents=True, exist_ok=True)
        self.lines: list[str] = []
        self.port: int | None = None
        ready = threading.Event()
        self.proc = subprocess.Popen(
            [str(BIN / "mitmdump"), "--listen-host", "127.0.0.1", "-p", "0", "--ignore-hosts", ".*",
             "--proxyauth", auth, "--set", f"confdir={cwd / 'mitm'}"],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                if "proxy listening at" in line:
                    self.port = int(line.rsplit(":", 1)[1].rstrip(".\n"))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        assert ready.wait(30) and self.port, "".join(self.lines)

    def connects(self) -> int:
        return sum("client connect" in line for line in self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)


def test_failover_between_upstream_proxies_with_credentials(tmp_path):
    pki = make_pki(tmp_path / "pki", ["api.openai.com", "direct.test"])
    with Upstream(pki, lambda r: Reply(chunks=[CHAT.body[i:i + 40] for i in range(0, len(CHAT.body), 40)])) as up:
        first = Mitmdump(tmp_path / "a", "alice:one")
        second = Mitmdump(tmp_path / "b", "bob:two")
        cfg = tmp_path / "streamtap.yaml"
        cfg.write_text(
            "proxy:\n"
            f"  upstream_proxy: ['http://alice:one@127.0.0.1:{first.port}', 'http://bob:two@127.0.0.1:{second.port}']\n"
            "routes:\n"
            "  - {host: api.openai.com, path: '^/v1/chat', provider: openai}\n"
            "  - {host: direct.test, provider: openai, via: direct}\n"
            f"connect_to: {{'api.openai.com:443': '127.0.0.1:{up.port}', 'direct.test:443': '127.0.0.1:{up.port}'}}\n"
        )
        proc = StreamtapProcess(["--config", str(cfg), "--certs", str(tmp_path / "certs"),
                                 "--api-socket", str(tmp_path / "api.sock"),
                                 "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}"], cwd=tmp_path)
        log = EventLog(str(tmp_path / "api.sock"), since=0)
        ctx = ssl.create_default_context(cafile=str(tmp_path / "certs" / "mitmproxy-ca-cert.pem"))
        try:
            def post(tag: str, host: str = "api.openai.com") -> bytes:
                with httpx.Client(proxy=proc.proxy_url, verify=ctx) as client:
                    return client.post(f"https://{host}/v1/chat/completions", content=b"{}",
                                       headers={"x-streamtap-tag": tag}).content

            assert post("via-first") == CHAT.body
            assert first.connects() >= 1 and second.connects() == 0
            first.stop()  # the first proxy goes away mid-run
            assert post("via-second") == CHAT.body
            assert second.connects() >= 1
            seen_by_second = second.connects()
            assert post("direct", "direct.test") == CHAT.body  # this route skips the proxies
            assert second.connects() == seen_by_second
            for tag in ("via-first", "via-second", "direct"):
                events = log.stream_of(tag)
                assert text_of(events) == CHAT.text and events[-1]["type"] == "stream.end"
        finally:
            proc.stop()
            first.stop()
            second.stop()
            print(proc.output, "".join(first.lines), "".join(second.lines))  # shown if the test fails
    assert any("unreachable, using http://127.0.0.1" in line or "cannot be reached" in line for line in proc.lines)
    assert "one" not in "".join(line for line in proc.lines if "alice" in line)  # no credentials in logs
