"""The CA bundle `streamtap env` points clients at: the system's trusted CAs plus
streamtap's, so that a shell whose every HTTPS call goes through the proxy still
trusts the real certificates of the hosts it passes through.

Rewritten whenever the system bundle or streamtap's CA changes. Certificates are public:
the file is 0644.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

BUNDLE_NAME = "streamtap-ca-bundle.pem"

# Where the system keeps its bundle when OpenSSL's default path is empty: Debian and
# Ubuntu, Fedora and RHEL, openSUSE, Alpine, macOS (Homebrew's OpenSSL).
WELL_KNOWN_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/etc/openssl/cert.pem",
)


class BundleError(Exception):
    pass


def system_bundle(ours: Path) -> Path:
    """The system's CA bundle file. SSL_CERT_FILE counts (as OpenSSL reads it), unless
    it is our own bundle, set by an earlier `eval "$(streamtap env)"`."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, *WELL_KNOWN_BUNDLES):
        if candidate and Path(candidate).is_file() and Path(candidate).resolve() != ours.resolve():
            return Path(candidate)
    raise BundleError("found no system CA bundle (looked at SSL_CERT_FILE, OpenSSL's default and "
                      + ", ".join(WELL_KNOWN_BUNDLES) + ")")


def client_bundle(ca_cert: Path) -> Path:
    """certs/streamtap-ca-bundle.pem, (re)written when it differs from the system
    bundle plus the CA (either changed, or another system bundle is in effect)."""
    bundle = ca_cert.with_name(BUNDLE_NAME)
    text = system_bundle(bundle).read_bytes().rstrip(b"\n") + b"\n" + ca_cert.read_bytes()
    if bundle.is_file() and bundle.read_bytes() == text:
        return bundle
    fd, tmp = tempfile.mkstemp(dir=bundle.parent, prefix=".bundle-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, bundle)  # readers never see half a bundle
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return bundle
