"""A private upstream CA: a config key and flag, checked at start; and a routed request
the upstream never answered shows up as a stream ending in stream.error."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.pki import make_pki
from tests.support.proc import StreamtapProcess
from tests.support.upstream import Reply, Upstream

from ..support.api_http import get_json

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
HOST = "api.openai.com"
SSE = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "streamtap"), "run", "--listen", "127.0.0.1:0", "--certs", str(tmp_path / "c"),
                           "--api-socket", str(tmp_path / "api.sock"), *args],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


@pytest.mark.parametrize("how", ["flag", "config", "set"])
def test_a_mistyped_upstream_ca_is_refused_in_one_line(tmp_path, how):
    missing = tmp_path / "no-such-ca.pem"
    if how == "flag":
        result = run(tmp_path, "--upstream-ca", str(missing))
    elif how == "config":
        (tmp_path / "c.yaml").write_text(f"proxy: {{upstream_ca: {missing}}}\n")
        result = run(tmp_path, "--config", str(tmp_path / "c.yaml"))
    else:
        result = run(tmp_path, "--set", f"ssl_verify_upstream_trusted_ca={missing}")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"ssl_verify_upstream_trusted_ca (proxy.upstream_ca, --upstream-ca): {missing}: No such file" \
        in result.stderr


def test_a_file_without_certificates_is_refused(tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    result = run(tmp_path, "--upstream-ca", str(junk))
    assert result.returncode == 2 and f"{junk}: holds no PEM certificate" in result.stderr


def test_upstream_ca_trusts_a_private_upstream_and_a_failure_is_a_stream_error(tmp_path):
    pki = make_pki(tmp_path / "pki", [HOST])
    with Upstream(pki, lambda request: Reply(chunks=[SSE])) as up:
        for trusted in (False, True):
            work = tmp_path / f"trusted-{trusted}"
            work.mkdir()
            args = ["--certs", str(work / "certs"), "--api-socket", str(work / "api.sock"),
                    "--set", f"streamtap_connect_to={HOST}:443=127.0.0.1:{up.port}"]
            proc = StreamtapProcess(args + (["--upstream-ca", str(pki.ca_cert)] if trusted else []), cwd=work)
            try:
                ctx = ssl.create_default_context(cafile=str(work / "certs" / "mitmproxy-ca-cert.pem"))
                with httpx.Client(proxy=proc.proxy_url, verify=ctx, timeout=30) as client:
                    reply = client.post(f"https://{HOST}/v1/chat/completions", content=b"{}")
                (stream,) = get_json(str(work / "api.sock"), "/v1/streams")["streams"]
            finally:
                proc.stop()
            if trusted:
                assert reply.status_code == 200 and reply.content == SSE
                assert stream["state"] == "ended"
            else:
                assert reply.status_code == 502
                assert stream["state"] == "error" and stream["response"]["status"] == 502
                assert stream["outcome"]["type"] == "stream.error" and stream["outcome"]["status"] == 502
                assert "Certificate verify failed" in stream["outcome"]["message"]
