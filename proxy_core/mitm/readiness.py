"""What the proxy can say of itself for /healthz: where it listens, whether its CA is loaded."""

from __future__ import annotations

from mitmproxy import ctx


def proxy_checks() -> dict[str, object]:
    proxyserver = ctx.master.addons.get("proxyserver")
    tlsconfig = ctx.master.addons.get("tlsconfig")
    return {
        "proxy_listening": [
            f"{host}:{port}"
            for server in (proxyserver.servers if proxyserver else [])
            if server.is_running
            for host, port, *_ in server.listen_addrs
        ],
        "ca_loaded": bool(tlsconfig is not None and tlsconfig.certstore is not None),
    }
