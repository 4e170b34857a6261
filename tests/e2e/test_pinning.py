"""A client that refuses streamtap's certificate (it pins, or does not trust the CA) is
named once in the log, and with streamtap_passthrough_on_reject its host is passed
through from then on."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.pki import make_pki
from tests.support.proc import StreamtapProcess
from tests.support.upstream import Reply, Upstream

pytestmark = pytest.mark.e2e

HOST = "api.openai.com"


def test_rejected_certificate_is_logged_once_then_passed_through(tmp_path):
    pki = make_pki(tmp_path / "pki", [HOST])
    with Upstream(pki, lambda r: Reply(headers=[("content-type", "text/plain")], chunks=[b"real upstream"])) as up:
        proc = StreamtapProcess(
            ["--certs", str(tmp_path / "certs"), "--api-socket", str(tmp_path / "api.sock"),
             "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
             "--set", f"streamtap_connect_to={HOST}:443=127.0.0.1:{up.port}",
             "--set", "streamtap_passthrough_on_reject=true"],
            cwd=tmp_path,
        )
        try:
            def pinned_client() -> subprocess.CompletedProcess[bytes]:
                # Trusts only the real server's CA, as a pinning client would.
                return subprocess.run(["curl", "-sS", "--proxy", proc.proxy_url, "--cacert", str(pki.ca_cert),
                                       f"https://{HOST}/v1/models"], capture_output=True, timeout=30)

            first = pinned_client()
            assert first.returncode != 0  # our certificate was refused
            second = pinned_client()
            assert second.returncode == 0 and second.stdout == b"real upstream"  # passed through
        finally:
            proc.stop()
    warnings = [line for line in proc.lines if "refused streamtap's certificate for api.openai.com" in line]
    assert len(warnings) == 1 and "pass it through from now on" in warnings[0]
