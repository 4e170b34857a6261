"""ConfigFile: streamtap's configuration and defaults under plain mitmdump / mitmweb.

`--set streamtap_config=FILE` applies a streamtap YAML file; options given explicitly on
the command line win over it. As the addon script (`standalone`), it also gives mitmproxy
what `streamtap run` would: loopback listening, the CA in `certs/`, and a refusal to
listen elsewhere without proxy authentication.

mitmproxy loads `-s` scripts after it has started listening, so a listen address that
comes from here takes effect by restarting the proxy servers in `running()`; until then
clients that are not on loopback are turned away (`client_connected`).
"""

from __future__ import annotations

import logging

from mitmproxy import connection, ctx, exceptions
from mitmproxy.proxy import mode_specs

from proxy_core.config.addresses import is_loopback
from proxy_core.config.settings import ConfigError, load_config
from proxy_core.pki.ca import ensure_ca

logger = logging.getLogger(__name__)

# Options whose change means the proxy servers must listen again.
_LISTENING = {"listen_host", "listen_port", "mode"}


class ConfigFile:
    def __init__(self, standalone: bool = False) -> None:
        self.standalone = standalone
        self.relisten = False
        self.refused: str | None = None
        self.started = False

    def load(self, loader) -> None:
        loader.add_option("streamtap_config", str, "", "streamtap YAML configuration file to apply.")

    def configure(self, updated: set[str]) -> None:
        if "streamtap_config" in updated and (ctx.options.streamtap_config or self.standalone):
            try:
                self._apply()
            except ValueError as e:  # ConfigError, CAError
                if self.started or not self.standalone:
                    raise exceptions.OptionsError(str(e)) from None
                # mitmproxy would print a script's OptionsError with a traceback
                logger.error(str(e))
        if self.standalone and updated & (_LISTENING | {"proxyauth"}):
            refused, self.refused = self.refused, _exposure()
            if self.refused and self.refused != refused:
                logger.error(f"streamtap: {self.refused}")

    def _apply(self) -> None:
        path = ctx.options.streamtap_config or None
        try:
            cfg = load_config(path)
        except ConfigError as e:
            raise ConfigError(f"streamtap_config: {e}") from None
        options = cfg.to_options()
        unset = {k: v for k, v in options.items() if k in ctx.options and not ctx.options.has_changed(k)}
        if self.standalone and "confdir" in unset:  # `streamtap run` made it already
            try:
                ensure_ca(cfg.certs_dir, cfg.permitted_domains())
            except ConfigError as e:
                raise ConfigError(f"streamtap: {e}") from None
        changed = {k for k, v in unset.items() if getattr(ctx.options, k) != v}
        ctx.options.update(**unset)
        self.relisten = self.relisten or bool(changed & _LISTENING)
        if path:
            logger.info(f"streamtap: applied {path}")

    async def running(self) -> None:
        self.started = True
        if self.refused:
            ctx.master.shutdown()
            return
        proxyserver = ctx.master.addons.get("proxyserver")
        if not self.relisten or proxyserver is None:
            return
        self.relisten = False
        modes = [mode_specs.ProxyMode.parse(m) for m in ctx.options.mode]
        await proxyserver.servers.update([])  # the same mode, a new address: stop, then start
        await proxyserver.servers.update(modes)

    def client_connected(self, client: connection.Client) -> None:
        if self.standalone and self.refused is None and not ctx.options.proxyauth:
            if not is_loopback(client.peername[0]):
                client.error = "streamtap: only loopback clients without proxy authentication"
        elif self.refused:
            client.error = f"streamtap: {self.refused}"


def _exposure() -> str | None:
    """Why this proxy would be open to other machines, if it would be."""
    if ctx.options.proxyauth:
        return None
    for spec in ctx.options.mode:
        try:
            host = mode_specs.ProxyMode.parse(spec).listen_host(ctx.options.listen_host)
        except ValueError:
            return None  # mitmproxy reports a bad mode itself
        if not is_loopback(host):
            where = host or "all interfaces"
            return (
                f"the proxy would listen on {where}, not loopback; "
                "listen with --listen-host 127.0.0.1 or set proxyauth (USER:PASS)"
            )
    return None
