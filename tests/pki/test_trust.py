"""CA handling and safe defaults: install plans, name constraints checked by OpenSSL,
export and rotation, the PAC file, env exports, refusal of unsafe listening, pinning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from mitmproxy.certs import CertStore

from proxy_core.config import routes
from proxy_core.pki import ca, trust

BIN = Path(sys.executable).parent


def streamtap(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "streamtap"), *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def which_all(name: str) -> str:
    return f"/usr/bin/{name}"


@pytest.mark.parametrize("platform, expected", [
    ("macos", ["security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {cert}"]),
    ("windows", ["certutil -addstore -f Root {cert}"]),
])
def test_install_plans_for_macos_and_windows(tmp_path, platform, expected):
    cert = ca.ensure_ca(tmp_path / "certs")
    steps = trust.plan("install", cert, platform, tmp_path)
    assert [s.shell() for s in steps] == [e.format(cert=cert.resolve()) for e in expected]
    undo = trust.plan("uninstall", cert, platform, tmp_path)
    assert undo and all("streamtap" in s.shell() or str(cert.resolve()) in s.shell() for s in undo)


def test_linux_plan_covers_the_system_store_and_every_nss_database(tmp_path):
    cert = ca.ensure_ca(tmp_path / "certs").resolve()
    home = tmp_path / "home"
    profile = home / ".mozilla" / "firefox" / "abcd.default-release"
    profile.mkdir(parents=True)
    (profile / "cert9.db").write_bytes(b"")
    steps = [s.shell() for s in trust.plan("install", cert, "linux", home, which=which_all, root=False)]
    assert steps[:2] == [
        f"sudo install -m 0644 {cert} /usr/local/share/ca-certificates/streamtap.crt",
        "sudo update-ca-certificates",
    ]
    nssdb = home / ".pki" / "nssdb"
    assert f"certutil -N -d sql:{nssdb} --empty-password" in steps  # Chromium's, created
    assert f"certutil -A -d sql:{nssdb} -n 'streamtap local CA' -t C,, -i {cert}" in steps
    assert f"certutil -A -d sql:{profile} -n 'streamtap local CA' -t C,, -i {cert}" in steps  # Firefox's
    undo = [s.shell() for s in trust.plan("uninstall", cert, "linux", home, which=which_all, root=True)]
    assert undo[:2] == ["rm -f /usr/local/share/ca-certificates/streamtap.crt", "update-ca-certificates --fresh"]
    assert f"certutil -D -d sql:{profile} -n 'streamtap local CA'" in undo


def test_linux_plan_with_p11kit_and_without_certutil(tmp_path):
    cert = ca.ensure_ca(tmp_path / "certs")
    only_trust = {"trust": "/usr/bin/trust"}.get
    with pytest.raises(trust.TrustError, match="certutil not found.*libnss3-tools"):
        trust.plan("install", cert, "linux", tmp_path, which=only_trust)
    steps = trust.plan("install", cert, "linux", tmp_path, which=lambda n: f"/usr/bin/{n}" if n != "update-ca-certificates" else None)
    assert steps[0].argv[:3] == ["trust", "anchor", "--store"]


def test_install_dry_run_from_the_command_line(tmp_path):
    result = streamtap("ca", "install", "--dry-run", "--platform", "windows", "--certs", str(tmp_path / "c"))
    assert result.returncode == 0
    assert result.stdout.startswith("certutil -addstore -f Root ")
    assert "mitmproxy-ca-cert.pem" in result.stdout


def verify(ca_pem: Path, leaf_pem: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", "verify", "-CAfile", str(ca_pem), str(leaf_pem)],
                          capture_output=True, text=True)


def leaf(certs: Path, host: str, out: Path) -> Path:
    store = CertStore.from_store(certs, "mitmproxy", 2048)
    entry = store.get_cert(host, [x509.DNSName(host)])
    out.write_bytes(entry.cert.to_pem())
    return out


def test_name_constrained_ca_signs_only_for_routed_domains(tmp_path):
    permitted = routes.permitted_domains(["api.openai.com", "*.example.com", "generativelanguage.googleapis.com"])
    assert permitted == ["api.openai.com", "example.com", "generativelanguage.googleapis.com"]
    certs = tmp_path / "certs"
    cert = ca.ensure_ca(certs, permitted)
    assert ca.describe(cert).permitted == permitted
    for host in ("api.openai.com", "eu.example.com"):
        ok = verify(cert, leaf(certs, host, tmp_path / f"{host}.pem"))
        assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = verify(cert, leaf(certs, "accounts.google.com", tmp_path / "bad.pem"))
    assert bad.returncode != 0 and "permitted subtree violation" in (bad.stdout + bad.stderr)
    # Without constraints the same leaf verifies: it is the constraint that refuses it.
    plain = tmp_path / "plain"
    plain_cert = ca.ensure_ca(plain)
    assert verify(plain_cert, leaf(plain, "accounts.google.com", tmp_path / "ok.pem")).returncode == 0


def test_config_asks_for_name_constraints_and_rotate_applies_them(tmp_path):
    certs = tmp_path / "certs"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"certs_dir: {certs}\nca: {{name_constraints: true}}\nroutes:\n  - {{host: '*.llm.test', provider: sse}}\n")
    ca.ensure_ca(certs)  # an older CA without constraints
    old = ca.describe(ca.cert_path(certs))
    refused = streamtap("ca", "rotate", "--config", str(cfg))  # no terminal to ask, no --yes
    assert refused.returncode == 1 and "not confirmed (pass --yes" in refused.stderr
    assert ca.describe(ca.cert_path(certs)).sha256 == old.sha256
    rotated = streamtap("ca", "rotate", "--yes", "--config", str(cfg))
    assert rotated.returncode == 0 and "constraints: llm.test" in rotated.stdout
    assert ca.describe(ca.cert_path(certs)).sha256 != old.sha256
    assert (certs / "mitmproxy-ca.pem").stat().st_mode & 0o777 == 0o600
    (backup,) = certs.glob("backup-*")  # the old CA is kept, as private as before
    assert f"the old CA is kept in {backup}" in rotated.stdout
    assert ca.describe(backup / "mitmproxy-ca-cert.pem").sha256 == old.sha256
    assert backup.stat().st_mode & 0o777 == 0o700 and (backup / "mitmproxy-ca.pem").stat().st_mode & 0o777 == 0o600


def test_export_formats(tmp_path):
    certs = tmp_path / "certs"
    ca.ensure_ca(certs)
    pem = streamtap("ca", "export", "--certs", str(certs)).stdout
    assert pem.startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE KEY" not in pem
    der_file = tmp_path / "ca.der"
    assert streamtap("ca", "export", "--format", "der", "--out", str(der_file), "--certs", str(certs)).returncode == 0
    assert x509.load_der_x509_certificate(der_file.read_bytes()) == x509.load_pem_x509_certificate(pem.encode())
    p12 = ca.export(certs, "p12")
    from cryptography.hazmat.primitives.serialization import pkcs12

    key, cert, extra = pkcs12.load_key_and_certificates(p12, None)
    assert key is None and cert is None
    assert [c.public_bytes(serialization.Encoding.PEM).decode() for c in extra] == [pem]


def test_pac_sends_only_routed_hosts_through_the_proxy(tmp_path):
    result = streamtap("pac", "--listen", "127.0.0.1:8899", "--route", "*.llm.test=sse")
    script = result.stdout
    assert "function FindProxyForURL(url, host)" in script
    assert 'shExpMatch(h, "api.openai.com")' in script and 'shExpMatch(h, "*.llm.test")' in script
    assert '"PROXY 127.0.0.1:8899"' in script and 'return "DIRECT";' in script
    node = subprocess.run(["node", "-e", script + """
        function shExpMatch(s, p) { return new RegExp('^' + p.replace(/[.+^${}()|\\\\]/g, '\\\\$&').replace(/\\*/g, '.*').replace(/\\?/g, '.') + '$').test(s); }
        console.log([FindProxyForURL('', 'api.openai.com'), FindProxyForURL('', 'x.llm.test'), FindProxyForURL('', 'example.com')].join('|'));
    """], capture_output=True, text=True)
    if node.returncode == 0:  # node is on the machine; the logic is checked for real
        assert node.stdout.strip() == "PROXY 127.0.0.1:8899|PROXY 127.0.0.1:8899|DIRECT"


@pytest.mark.parametrize("shell, line", [
    ("sh", "export HTTPS_PROXY=http://127.0.0.1:8080"),
    ("fish", "set -gx HTTPS_PROXY http://127.0.0.1:8080"),
    ("powershell", "$env:HTTPS_PROXY = 'http://127.0.0.1:8080'"),
])
def test_env_for_each_shell(tmp_path, shell, line):
    out = streamtap("env", "--shell", shell, "--certs", str(tmp_path / "c")).stdout
    assert line in out.splitlines()
    for name in ("HTTP_PROXY", "NO_PROXY", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE"):
        assert name in out


@pytest.mark.parametrize("args, message", [
    (["--listen", "0.0.0.0:8080"], "proxy.listen: 0.0.0.0 is not loopback; set proxy.auth"),
    (["--api-listen", "0.0.0.0:9000"], "api.listen: 0.0.0.0 is not loopback; set api.token"),
])
def test_unsafe_listening_is_refused(tmp_path, args, message):
    result = streamtap("run", *args, "--certs", str(tmp_path / "c"), cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr


def test_listening_elsewhere_with_auth_and_token_is_accepted(tmp_path):
    from proxy_core.config.settings import config_from_dict

    cfg = config_from_dict({"proxy": {"listen": "0.0.0.0:8080", "auth": "me:secret"},
                            "api": {"listen": "0.0.0.0:9000", "token": "t0ken"}})
    opts = cfg.to_options()
    assert opts["proxyauth"] == "me:secret" and opts["streamtap_api_token"] == "t0ken"


def test_secrets_are_redacted_in_urls_and_headers():
    from proxy_core.pipeline.redact import redact_headers, redact_url

    assert redact_url("https://g.test/v1/models/x:streamGenerateContent?alt=sse&key=AIzaSECRET") == (
        "https://g.test/v1/models/x:streamGenerateContent?alt=sse&key=[redacted]"
    )
    headers = redact_headers([("Authorization", "Bearer sk-1"), ("X-Goog-Api-Key", "AIza"), ("Cookie", "a=b"),
                              ("x-api-key", "sk-ant"), ("Proxy-Authorization", "Basic x"), ("Accept", "*/*")])
    assert headers == {"authorization": "[redacted]", "x-goog-api-key": "[redacted]", "cookie": "[redacted]",
                       "x-api-key": "[redacted]", "proxy-authorization": "[redacted]", "accept": "*/*"}


def test_proxy_auth_is_required_when_set(tmp_path):
    from tests.support.proc import StreamtapProcess

    proc = StreamtapProcess(["--certs", str(tmp_path / "c"), "--api-socket", str(tmp_path / "s.sock"),
                             "--proxy-auth", "me:s3cret"], cwd=tmp_path)
    try:
        def status(proxy: str) -> str:
            r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--proxy", proxy,
                                "http://plain.test/"], capture_output=True, text=True, timeout=30)
            return r.stdout

        assert status(f"http://127.0.0.1:{proc.proxy_port}") == "407"
        assert status(f"http://me:wrong@127.0.0.1:{proc.proxy_port}") == "407"
        assert status(f"http://me:s3cret@127.0.0.1:{proc.proxy_port}") != "407"
    finally:
        proc.stop()
    assert "s3cret" not in proc.output


def test_tcp_api_with_a_token_requires_it(tmp_path):
    import urllib.error
    import urllib.request

    from tests.support.proc import StreamtapProcess

    proc = StreamtapProcess(["--certs", str(tmp_path / "c"), "--api-socket", str(tmp_path / "s.sock"),
                             "--api-listen", "127.0.0.1:0", "--set", "streamtap_api_token=t0k3n"], cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{proc.api_port}"

        def status(path: str, headers: dict[str, str] | None = None) -> int:
            try:
                with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers or {}), timeout=10) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code

        assert status("/healthz") == 401
        assert status("/healthz", {"Authorization": "Bearer wrong"}) == 401
        assert status("/healthz", {"Authorization": "Bearer t0k3n"}) == 200
        assert status("/v1/streams?token=t0k3n") == 200  # EventSource's way
        assert status("/proxy.pac") == 200  # browsers cannot send a token; it holds no data
        from ..support.api_http import get_json

        assert get_json(str(tmp_path / "s.sock"), "/healthz")["status"] == "ok"  # the socket needs none
    finally:
        proc.stop()
