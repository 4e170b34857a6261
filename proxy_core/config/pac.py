"""A proxy auto-config file: routed hosts through streamtap, everything else DIRECT, so
a browser or system set to it never even hands unrelated traffic to the proxy."""

from __future__ import annotations

import json
from collections.abc import Iterable


def pac_script(hosts: Iterable[str], proxy: str) -> str:
    """`hosts` are route host globs (shExpMatch understands the same * and ?)."""
    patterns = sorted(set(hosts))
    tests = "\n".join(f"        || shExpMatch(h, {json.dumps(p)})" for p in patterns)
    return (
        "// streamtap: decrypt only the AI endpoints it is told to; everything else goes direct.\n"
        "function FindProxyForURL(url, host) {\n"
        "    var h = host.toLowerCase();\n"
        f"    if (false\n{tests})\n"
        f"        return {json.dumps(f'PROXY {proxy}')};\n"
        '    return "DIRECT";\n'
        "}\n"
    )
