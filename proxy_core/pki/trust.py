"""Installing the CA where clients look for trust: the system store and the NSS
databases of Chromium and Firefox on Linux, the System keychain on macOS, the Root
store on Windows. Plans are plain command lists, so `--dry-run` shows exactly what runs.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NICKNAME = "streamtap local CA"
NSS_PACKAGES = "libnss3-tools (Debian, Ubuntu) or nss-tools (Fedora, RHEL)"


@dataclass(frozen=True, slots=True)
class Step:
    argv: list[str]
    why: str

    def shell(self) -> str:
        return shlex.join(self.argv)


class TrustError(Exception):
    pass


def nss_databases(home: Path) -> list[Path]:
    """NSS databases of the user: Chromium's (~/.pki/nssdb, created when missing),
    snap Chromium's, and every Firefox profile's."""
    dbs = [home / ".pki" / "nssdb"]
    dbs += sorted(p for p in (home / "snap" / "chromium" / "current" / ".pki").glob("nssdb") if p.is_dir())
    for root in (home / ".mozilla" / "firefox", home / "snap" / "firefox" / "common" / ".mozilla" / "firefox"):
        dbs += sorted(p.parent for p in root.glob("*/cert9.db"))
    return dbs


def plan(
    action: str,
    cert: Path,
    platform: str,
    home: Path,
    which: Callable[[str], str | None] = shutil.which,
    root: bool = True,
) -> list[Step]:
    """The commands that install (or uninstall) `cert` on `platform`. On Linux, the
    system-store steps get `sudo` when not `root`; the NSS steps are the user's own."""
    if action not in ("install", "uninstall"):
        raise ValueError(action)
    install = action == "install"
    cert = cert.resolve()
    if platform == "macos":
        if install:
            return [Step(["security", "add-trusted-cert", "-d", "-r", "trustRoot", "-k",
                          "/Library/Keychains/System.keychain", str(cert)], "trust it system-wide (needs sudo)")]
        return [Step(["security", "remove-trusted-cert", "-d", str(cert)], "remove the trust setting"),
                Step(["security", "delete-certificate", "-c", NICKNAME, "/Library/Keychains/System.keychain"],
                     "remove it from the System keychain")]
    if platform == "windows":
        if install:
            return [Step(["certutil", "-addstore", "-f", "Root", str(cert)],
                         "trust it machine-wide (as administrator)")]
        return [Step(["certutil", "-delstore", "Root", NICKNAME], "remove it from the Root store")]
    if platform != "linux":
        raise TrustError(f"unknown platform {platform!r} (linux, macos or windows)")
    system = _linux_system(install, cert, which)
    if not root:
        system = [Step(["sudo", *s.argv], s.why) for s in system]
    return system + _linux_nss(install, cert, home, which)


def _linux_system(install: bool, cert: Path, which: Callable[[str], str | None]) -> list[Step]:
    if which("update-ca-certificates"):  # Debian, Ubuntu, Alpine
        target = "/usr/local/share/ca-certificates/streamtap.crt"
        if install:
            return [Step(["install", "-m", "0644", str(cert), target], "add it to the system store"),
                    Step(["update-ca-certificates"], "rebuild the system bundle")]
        return [Step(["rm", "-f", target], "remove it from the system store"),
                Step(["update-ca-certificates", "--fresh"], "rebuild the system bundle")]
    if which("trust"):  # p11-kit: Fedora, Arch
        argv = ["trust", "anchor", "--store" if install else "--remove", str(cert)]
        return [Step(argv, "add it to the system store" if install else "remove it from the system store")]
    if which("update-ca-trust"):  # older RHEL
        target = "/etc/pki/ca-trust/source/anchors/streamtap.pem"
        first = (Step(["install", "-m", "0644", str(cert), target], "add it to the system store") if install
                 else Step(["rm", "-f", target], "remove it from the system store"))
        return [first, Step(["update-ca-trust", "extract"], "rebuild the system bundle")]
    raise TrustError("no system trust tool found (update-ca-certificates, trust or update-ca-trust)")


def _linux_nss(install: bool, cert: Path, home: Path, which: Callable[[str], str | None]) -> list[Step]:
    if not which("certutil"):
        raise TrustError(f"certutil not found, needed for Chromium and Firefox: install {NSS_PACKAGES}")
    steps = []
    for db in nss_databases(home):
        where = f"sql:{db}"
        if install:
            if not (db / "cert9.db").exists():
                steps.append(Step(["mkdir", "-p", str(db)], "create Chromium's NSS database"))
                steps.append(Step(["certutil", "-N", "-d", where, "--empty-password"], "initialise it"))
            steps.append(Step(["certutil", "-A", "-d", where, "-n", NICKNAME, "-t", "C,,", "-i", str(cert)],
                              f"trust it for TLS servers in {db}"))
        elif (db / "cert9.db").exists():
            steps.append(Step(["certutil", "-D", "-d", where, "-n", NICKNAME], f"remove it from {db}"))
    return steps
