"""The local certificate authority in certs/ (mitmproxy's confdir).

The files keep mitmproxy's names so mitmproxy loads them as they are; we create them
first, with our own subject, and keep the key 0600 in a 0700 directory. With
`ca.name_constraints`, the CA carries X.509 NameConstraints permitting only the routed
domains, so its key, if it leaked, could not vouch for any other site.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from proxy_core.config.settings import ConfigError

BASENAME = "mitmproxy"  # mitmproxy looks for <confdir>/mitmproxy-ca.pem
ORGANIZATION = "streamtap"
COMMON_NAME = "streamtap local CA"
KEY_SIZE = 2048
VALIDITY = datetime.timedelta(days=3650)
BACKDATE = datetime.timedelta(days=2)  # tolerate clients whose clocks run behind

# Every file the CA is kept in; the first two hold the private key.
SECRET_FILES = (f"{BASENAME}-ca.pem", f"{BASENAME}-ca.p12")
PUBLIC_FILES = (f"{BASENAME}-ca-cert.pem", f"{BASENAME}-ca-cert.cer", f"{BASENAME}-ca-cert.p12")


DHPARAM_FILE = f"{BASENAME}-dhparam.pem"  # mitmproxy writes it beside the CA on first start


class CAError(ConfigError):
    """The certs directory cannot be used; the message is one line that says why (the
    command line reports it as it reports a bad configuration)."""


def key_path(certs_dir: str | Path) -> Path:
    return Path(certs_dir) / SECRET_FILES[0]


def cert_path(certs_dir: str | Path) -> Path:
    return Path(certs_dir) / PUBLIC_FILES[0]


def ensure_ca(certs_dir: str | Path, permitted: list[str] | None = None) -> Path:
    """Create the CA on first use; return the certificate's path. Idempotent: an
    existing CA is kept as it is (`rotate_ca` replaces it)."""
    certs = Path(certs_dir)
    if not key_path(certs).exists():
        try:
            certs.mkdir(parents=True, exist_ok=True, mode=0o700)
            _write_ca(certs, *_new_ca(permitted))
        except OSError as e:
            raise CAError(f"cannot create the CA in {certs}: {e.strerror or e}") from None
    # A CA mounted read-only (a secret volume) must work as it is: only modes that
    # are too open get tightened.
    _keep_private(certs, 0o700)
    for name in SECRET_FILES:
        if (certs / name).exists():
            _keep_private(certs / name, 0o600)
    if not (certs / DHPARAM_FILE).exists() and not os.access(certs, os.W_OK):
        raise CAError(f"{certs} is read-only and lacks {DHPARAM_FILE}, which mitmproxy would write there: "
                      "copy the whole directory from a first run (streamtap run writes it)")
    return cert_path(certs)


def _keep_private(path: Path, mode: int) -> None:
    if path.stat().st_mode & 0o077:
        try:
            os.chmod(path, mode)
        except OSError as e:
            raise CAError(f"{path} is readable by others and cannot be made {oct(mode)[2:]}: "
                          f"{e.strerror or e}") from None


def rotate_ca(certs_dir: str | Path, permitted: list[str] | None = None) -> tuple[Path, Path | None]:
    """A new CA in place of the old one, which is moved (not deleted) into
    `backup-<UTC time>/` beside it; returns the new certificate and that backup. Leaf
    certificates live only in a running proxy's memory: restarting it drops every
    leaf the old CA signed."""
    certs = Path(certs_dir)
    backup = None
    old = [certs / name for name in (*SECRET_FILES, *PUBLIC_FILES) if (certs / name).exists()]
    if old:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        backup = certs / f"backup-{stamp}"
        backup.mkdir(mode=0o700)
        for path in old:
            path.rename(backup / path.name)
    return ensure_ca(certs, permitted), backup


def _new_ca(permitted: list[str] | None) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, COMMON_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    usage = x509.KeyUsage(
        digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .serial_number(x509.random_serial_number())
        .subject_name(name)
        .issuer_name(name)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now - BACKDATE + VALIDITY)
        .public_key(key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if permitted:
        constraints = x509.NameConstraints(
            permitted_subtrees=[x509.DNSName(d) for d in permitted], excluded_subtrees=None
        )
        builder = builder.add_extension(constraints, critical=True)
    return key, builder.sign(key, hashes.SHA256())


def _write_ca(certs: Path, key: rsa.RSAPrivateKey, cert: x509.Certificate) -> None:
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    cert_pem = cert.public_bytes(pem)
    old_umask = os.umask(0o077)  # the key files are never readable by others, not even briefly
    try:
        (certs / SECRET_FILES[0]).write_bytes(key_pem + cert_pem)
        (certs / SECRET_FILES[1]).write_bytes(
            pkcs12.serialize_key_and_certificates(BASENAME.encode(), key, cert, None, serialization.NoEncryption())
        )
    finally:
        os.umask(old_umask)
    (certs / PUBLIC_FILES[0]).write_bytes(cert_pem)
    (certs / PUBLIC_FILES[1]).write_bytes(cert_pem)  # .cer: the same PEM, for Android
    (certs / PUBLIC_FILES[2]).write_bytes(
        pkcs12.serialize_key_and_certificates(BASENAME.encode(), None, cert, None, serialization.NoEncryption())
    )


def export(certs_dir: str | Path, fmt: str) -> bytes:
    """The CA certificate (never its key) as pem, der or p12."""
    cert = x509.load_pem_x509_certificate(cert_path(certs_dir).read_bytes())
    if fmt == "pem":
        return cert.public_bytes(serialization.Encoding.PEM)
    if fmt == "der":
        return cert.public_bytes(serialization.Encoding.DER)
    if fmt == "p12":  # a trust bundle: the certificate alone, no key
        return pkcs12.serialize_key_and_certificates(
            COMMON_NAME.encode(), None, None, [cert], serialization.NoEncryption()
        )
    raise ValueError(f"unknown format {fmt!r} (pem, der or p12)")


@dataclass(frozen=True, slots=True)
class CAInfo:
    path: Path
    subject: str
    sha256: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    permitted: list[str] | None

    def lines(self) -> list[str]:
        return [
            f"subject:     {self.subject}",
            f"sha256:      {self.sha256}",
            f"valid from:  {self.not_before:%Y-%m-%d %H:%M:%S} UTC",
            f"expires:     {self.not_after:%Y-%m-%d %H:%M:%S} UTC",
            f"constraints: {', '.join(self.permitted) if self.permitted else 'none (any host)'}",
            f"certificate: {self.path}",
        ]


def describe(path: Path) -> CAInfo:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    try:
        nc = cert.extensions.get_extension_for_class(x509.NameConstraints).value
        permitted = [str(n.value) for n in nc.permitted_subtrees or []]
    except x509.ExtensionNotFound:
        permitted = None
    return CAInfo(
        path=path,
        subject=cert.subject.rfc4514_string(),
        sha256=":".join(digest[i : i + 2] for i in range(0, len(digest), 2)),
        not_before=cert.not_valid_before_utc.replace(tzinfo=None),
        not_after=cert.not_valid_after_utc.replace(tzinfo=None),
        permitted=permitted,
    )
