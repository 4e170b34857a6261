"""UpstreamProxies: reach the AI endpoints through other proxies, with failover.

`streamtap_upstream_proxies` is an ordered list of http(s):// proxy URLs (credentials
allowed); mitmproxy runs in upstream mode through the first. When a proxy cannot be
connected to, the next one in the list is used, and the failed one is skipped for
`RETRY_AFTER` seconds. `streamtap_via` picks proxies per host (`HOST_GLOB=URL[,URL]`
or `HOST_GLOB=direct`) for split setups. TLS to the real endpoint still runs end to end
through the tunnel and is verified as always.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cryptography import x509
from mitmproxy import ctx, exceptions, http
from mitmproxy.connection import ConnectionState
from mitmproxy.proxy import server_hooks

logger = logging.getLogger(__name__)

RETRY_AFTER = 15.0  # seconds a proxy that could not be reached is skipped
PROBE_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class UpstreamProxy:
    scheme: str
    address: tuple[str, int]
    auth: str | None  # "user:pass"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address[0]}:{self.address[1]}"


def parse_proxy_url(url: str) -> UpstreamProxy:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// proxy URL")
    port = parts.port or (443 if parts.scheme == "https" else 8080)
    auth = f"{unquote(parts.username)}:{unquote(parts.password or '')}" if parts.username is not None else None
    return UpstreamProxy(parts.scheme, (parts.hostname, port), auth)


class UpstreamProxies:
    def __init__(self) -> None:
        self.proxies: list[UpstreamProxy] = []
        self.via: list[tuple[str, list[UpstreamProxy] | None]] = []  # (host glob, proxies or None = direct)
        self.down_until: dict[tuple[str, int], float] = {}

    def load(self, loader) -> None:
        loader.add_option(
            "streamtap_upstream_proxies",
            Sequence[str],
            [],
            "Upstream proxies (http(s)://[user:pass@]host:port), tried in order with failover.",
        )
        loader.add_option(
            "streamtap_via",
            Sequence[str],
            [],
            "Per-host upstream choice: HOST_GLOB=URL[,URL...] or HOST_GLOB=direct.",
        )

    def configure(self, updated: set[str]) -> None:
        if "streamtap_upstream_proxies" in updated:
            try:
                self.proxies = [parse_proxy_url(u) for u in ctx.options.streamtap_upstream_proxies]
            except ValueError as e:
                raise exceptions.OptionsError(f"streamtap_upstream_proxies: {e}") from None
        if "streamtap_via" in updated:
            via = []
            for spec in ctx.options.streamtap_via:
                host, eq, target = spec.partition("=")
                if not eq or not host:
                    raise exceptions.OptionsError(
                        f"streamtap_via: {spec!r}: expected HOST_GLOB=URL[,URL] or HOST_GLOB=direct"
                    )
                try:
                    chosen = None if target == "direct" else [parse_proxy_url(u) for u in target.split(",")]
                except ValueError as e:
                    raise exceptions.OptionsError(f"streamtap_via: {e}") from None
                via.append((host.lower(), chosen))
            self.via = via
        if "ssl_verify_upstream_trusted_ca" in updated and ctx.options.ssl_verify_upstream_trusted_ca:
            # mitmproxy would take a mistyped path and answer every request 502 later.
            problem = upstream_ca_problem(ctx.options.ssl_verify_upstream_trusted_ca)
            if problem:
                raise exceptions.OptionsError(
                    f"ssl_verify_upstream_trusted_ca (proxy.upstream_ca, --upstream-ca): {problem}")

    def _chain_for(self, host: str) -> list[UpstreamProxy] | None:
        for glob, chosen in self.via:
            if fnmatch.fnmatchcase(host.lower(), glob):
                return chosen
        return self.proxies or None

    def _choose(self, flow: http.HTTPFlow, host: str) -> None:
        server = flow.server_conn
        if server.state is not ConnectionState.CLOSED or not (self.proxies or self.via):
            return
        chain = self._chain_for(host)
        server.via = (chain[0].scheme, chain[0].address) if chain else None  # type: ignore[assignment]

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._choose(flow, flow.request.host)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._choose(flow, flow.request.pretty_host)

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """A connection to one of our proxies: if it cannot be reached, use the next one."""
        if data.server.address is None:
            return
        address = (str(data.server.address[0]), int(data.server.address[1]))
        chain = self._chain_of(address)
        if not chain:
            return
        start = next(i for i, p in enumerate(chain) if p.address == address)
        now = time.monotonic()
        for proxy in chain[start:] + chain[:start]:
            if self.down_until.get(proxy.address, 0) > now:
                continue
            if await _reachable(proxy.address):
                if proxy.address != address:
                    logger.warning(f"streamtap: upstream proxy {chain[start].url} unreachable, using {proxy.url}")
                    data.server.address = proxy.address
                return
            self.down_until[proxy.address] = now + RETRY_AFTER
            logger.warning(f"streamtap: upstream proxy {proxy.url} cannot be reached; "
                           f"skipping it for {RETRY_AFTER:.0f}s")
        data.server.error = "no upstream proxy can be reached"

    def http_connect_upstream(self, flow: http.HTTPFlow) -> None:
        """Each proxy its own credentials."""
        address = flow.server_conn.address and tuple(flow.server_conn.address[:2])
        for proxy in [*self.proxies, *(p for _, chain in self.via for p in chain or [])]:
            if proxy.address == address and proxy.auth:
                token = base64.b64encode(proxy.auth.encode()).decode()
                flow.request.headers["Proxy-Authorization"] = f"Basic {token}"
                return

    def _chain_of(self, address: tuple[str, int]) -> list[UpstreamProxy] | None:
        for chain in [self.proxies, *(c for _, c in self.via if c)]:
            if any(p.address == address for p in chain):
                return chain
        return None


async def _reachable(address: tuple[str, int]) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(*address), PROBE_TIMEOUT)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def upstream_ca_problem(path: str) -> str | None:
    """Why `path` cannot serve as the CA bundle upstream certificates are checked
    against, or None when it can."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return f"{path}: {e.strerror or e}"
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        return f"{path}: holds no PEM certificate"
    return None
