"""Routing: decrypt only routed hosts, redirect `connect_to` targets, tag requests."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mitmproxy import ctx, exceptions, http, tls
from mitmproxy.proxy import server_hooks

from proxy_core.config.addresses import parse_connect_to
from proxy_core.config.routes import DEFAULT_ROUTES, RouteError, RouteTable, parse_route
from proxy_core.mitm.flowinfo import TAG

logger = logging.getLogger(__name__)

PROVIDER = "streamtap.provider"  # in flow.metadata: the routed provider's name (plain data)
TAG_HEADER = "x-streamtap-tag"


# Requests that never ask for an answer: a browser's CORS preflight, a HEAD.
NO_ANSWER_METHODS = frozenset({"OPTIONS", "HEAD"})


def answers(request: http.Request) -> bool:
    """Whether a routed request can be asking for an answer (its method says)."""
    return request.method.upper() not in NO_ANSWER_METHODS


def default_route_specs() -> list[str]:
    return [f"{r['host']}:{r['path']}={r['provider']}" for r in DEFAULT_ROUTES]


class Routing:
    def __init__(self) -> None:
        # configure() only hears of options that change: start from the defaults.
        self.table = RouteTable([parse_route(s) for s in default_route_specs()])
        self.connect_to: dict[tuple[str, int], tuple[str, int]] = {}
        self.rejected: set[str] = set()  # hosts whose clients refused our certificate
        self._warned: set[str] = set()

    def load(self, loader) -> None:
        loader.add_option(
            "streamtap_routes",
            Sequence[str],
            default_route_specs(),
            "Routes to decrypt and decode, as HOST[:PATH_REGEX]=PROVIDER. Hosts with no "
            "route are passed through without decryption.",
        )
        loader.add_option(
            "streamtap_connect_to",
            Sequence[str],
            [],
            "Connect to another address for a host, keeping its TLS name, as "
            "HOST:PORT=ADDRESS:PORT (like curl --connect-to).",
        )
        loader.add_option(
            "streamtap_passthrough_on_reject",
            bool,
            False,
            "Once a client refuses streamtap's certificate for a host (certificate pinning), "
            "pass that host through undecrypted from then on.",
        )

    def configure(self, updated: set[str]) -> None:
        if "streamtap_routes" in updated:
            try:
                self.table = RouteTable([parse_route(s) for s in ctx.options.streamtap_routes])
            except RouteError as e:
                raise exceptions.OptionsError(f"streamtap_routes: {e}") from None
        if "streamtap_connect_to" in updated:
            try:
                self.connect_to = dict(parse_connect_to(s) for s in ctx.options.streamtap_connect_to)
            except ValueError as e:
                raise exceptions.OptionsError(f"streamtap_connect_to: {e}") from None

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        host = data.client_hello.sni or (data.context.server.address or ("",))[0]
        if not self.table.intercepts(host) or host in self.rejected:
            data.ignore_connection = True

    def tls_failed_client(self, data: tls.TlsData) -> None:
        """The client refused the handshake: it does not trust our CA, or it pins the
        real certificate. Said once per host, with what to do about it."""
        host = data.context.client.sni or (data.context.server.address or ("?",))[0]
        if host in self.rejected or host in self._warned:
            return
        self._warned.add(host)
        hint = (
            "streamtap will pass it through from now on"
            if ctx.options.streamtap_passthrough_on_reject
            else "trust the CA (`streamtap ca install`), or set streamtap_passthrough_on_reject "
            "to pass such hosts through"
        )
        logger.warning(f"streamtap: a client refused streamtap's certificate for {host} "
                       f"(untrusted CA or certificate pinning): {hint}")
        if ctx.options.streamtap_passthrough_on_reject:
            self.rejected.add(host)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        if data.server.address is None:
            return
        host, port, *_ = data.server.address
        target = self.connect_to.get((str(host).lower(), port))
        if target is not None:
            if data.server.sni is None:
                data.server.sni = str(host)  # the TLS name stays the requested host
            data.server.address = target

    def http_connect_upstream(self, flow: http.HTTPFlow) -> None:
        """Through an upstream proxy, connect_to changes the tunnel's target instead."""
        target = self.connect_to.get((flow.request.host.lower(), flow.request.port))
        if target is not None:
            flow.request.host, flow.request.port = target
            flow.request.authority = f"{target[0]}:{target[1]}"

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        tag = flow.request.headers.pop(TAG_HEADER, None)
        if tag is not None:
            flow.metadata[TAG] = tag
        route = self.table.match(flow.request.pretty_host, flow.request.path)
        if route is not None and answers(flow.request):
            flow.metadata[PROVIDER] = route.provider
