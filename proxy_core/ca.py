"""The local certificate authority in certs/ (mitmproxy's confdir).

The files keep mitmproxy's names so mitmproxy loads them as they are; we create them
first, with our own subject, and keep the key 0600 in a 0700 directory.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from mitmproxy.certs import CertStore

BASENAME = "mitmproxy"  # mitmproxy looks for <confdir>/mitmproxy-ca.pem
ORGANIZATION = "streamtap"
COMMON_NAME = "streamtap local CA"
KEY_SIZE = 2048


def key_path(certs_dir: str | Path) -> Path:
    return Path(certs_dir) / f"{BASENAME}-ca.pem"


def cert_path(certs_dir: str | Path) -> Path:
    return Path(certs_dir) / f"{BASENAME}-ca-cert.pem"


def ensure_ca(certs_dir: str | Path) -> Path:
    """Create the CA on first use; return the certificate's path. Idempotent."""
    certs = Path(certs_dir)
    certs.mkdir(parents=True, exist_ok=True)
    os.chmod(certs, 0o700)
    if not key_path(certs).exists():
        CertStore.create_store(certs, BASENAME, KEY_SIZE, organization=ORGANIZATION, cn=COMMON_NAME)
    for secret in (key_path(certs), certs / f"{BASENAME}-ca.p12"):
        if secret.exists():
            os.chmod(secret, 0o600)
    return cert_path(certs)


@dataclass(frozen=True, slots=True)
class CAInfo:
    path: Path
    subject: str
    sha256: str
    not_before: datetime
    not_after: datetime

    def lines(self) -> list[str]:
        return [
            f"subject:     {self.subject}",
            f"sha256:      {self.sha256}",
            f"valid from:  {self.not_before:%Y-%m-%d %H:%M:%S} UTC",
            f"expires:     {self.not_after:%Y-%m-%d %H:%M:%S} UTC",
            f"certificate: {self.path}",
        ]


def describe(path: Path) -> CAInfo:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return CAInfo(
        path=path,
        subject=cert.subject.rfc4514_string(),
        sha256=":".join(digest[i : i + 2] for i in range(0, len(digest), 2)),
        not_before=cert.not_valid_before_utc.replace(tzinfo=None),
        not_after=cert.not_valid_after_utc.replace(tzinfo=None),
    )
