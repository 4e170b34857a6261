"""`eval "$(streamtap env)"` keeps every other HTTPS call of that shell working: the
bundle it exports trusts the system's CAs as well as streamtap's."""

from __future__ import annotations

import os
import shlex
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from proxy_core.pki.bundle import system_bundle
from tests.support import fixtures
from tests.support.pki import make_pki
from tests.support.proc import StreamtapProcess
from tests.support.upstream import Reply, Upstream

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
ROUTED, PASSED = "llm.env.test", "plain.env.test"
CHAT = fixtures.openai_chat_text()


def exported(output: str) -> dict[str, str]:
    pairs = (shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in output.splitlines())
    return dict(pairs)


def test_env_bundle_trusts_the_system_cas_and_streamtaps(tmp_path):
    pki = make_pki(tmp_path / "pki", [ROUTED, PASSED])
    # This machine's system store, plus the CA that signed the passed-through host: as
    # if that host had a certificate from a public CA.
    system = tmp_path / "system-bundle.pem"
    system.write_bytes(system_bundle(tmp_path / "none").read_bytes() + pki.ca_cert.read_bytes())
    certs = tmp_path / "certs"
    env = {**os.environ, "SSL_CERT_FILE": str(system)}
    result = subprocess.run([str(BIN / "streamtap"), "env", "--certs", str(certs)], capture_output=True,
                            text=True, env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    exports = exported(result.stdout)
    bundle = Path(exports["SSL_CERT_FILE"])
    assert exports["REQUESTS_CA_BUNDLE"] == exports["CURL_CA_BUNDLE"] == str(bundle) and bundle.is_absolute()
    trusted = ssl.create_default_context(cafile=str(bundle)).cert_store_stats()["x509_ca"]
    system_count = ssl.create_default_context(cafile=str(system)).cert_store_stats()["x509_ca"]
    assert trusted == system_count + 1 and system_count > 1
    assert oct(bundle.stat().st_mode & 0o777) == "0o644"

    with Upstream(pki, lambda request: Reply(chunks=[CHAT.body])) as up:
        proc = StreamtapProcess(
            ["--certs", str(certs), "--api-socket", str(tmp_path / "api.sock"),
             "--route", f"{ROUTED}:^/v1=openai",
             "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
             "--set", f"streamtap_connect_to={ROUTED}:443=127.0.0.1:{up.port}",
             "--set", f"streamtap_connect_to={PASSED}:443=127.0.0.1:{up.port}"],
            cwd=tmp_path,
        )
        try:
            verify = ssl.create_default_context(cafile=str(bundle))
            with httpx.Client(proxy=proc.proxy_url, verify=verify, timeout=30) as client:
                # decrypted by streamtap: its CA is in the bundle
                assert client.post(f"https://{ROUTED}/v1/chat/completions", content=b"{}").content == CHAT.body
                # passed through: the host's own certificate, which the system CAs vouch for
                assert client.post(f"https://{PASSED}/anything", content=b"{}").content == CHAT.body
        finally:
            proc.stop()


def test_env_does_not_bundle_its_own_bundle(tmp_path):
    """A shell that already ran `eval "$(streamtap env)"` has SSL_CERT_FILE at our bundle:
    the next run takes the system's, not ours, so the bundle never grows."""
    certs = tmp_path / "certs"
    first = exported(subprocess.run([str(BIN / "streamtap"), "env", "--certs", str(certs)], capture_output=True,
                                    text=True, timeout=60).stdout)
    size = Path(first["SSL_CERT_FILE"]).stat().st_size
    again = subprocess.run([str(BIN / "streamtap"), "env", "--certs", str(certs)], capture_output=True, text=True,
                           env={**os.environ, "SSL_CERT_FILE": first["SSL_CERT_FILE"]}, timeout=60)
    assert again.returncode == 0 and Path(first["SSL_CERT_FILE"]).stat().st_size == size
