"""ApiServer: serves the hub's API on a Unix socket (0600) and, optionally, loopback TCP."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from mitmproxy import ctx, exceptions
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from proxy_core.api.handlers import Access, make_app
from proxy_core.api.server import ApiHTTPServer, bind_private_unix_socket
from proxy_core.config import checks, defaults
from proxy_core.config.addresses import (
    allowed_hosts,
    bracketed,
    origin_problem,
    parse_listen,
)
from proxy_core.config.api_token import OFF, TokenError, ensure_token, token_path
from proxy_core.config.checks import ConfigError
from proxy_core.config.pac import pac_script
from proxy_core.config.routes import parse_route
from proxy_core.hub.hub import Hub
from proxy_core.mitm.decoder_process import DecoderProcess, elsewhere
from proxy_core.mitm.readiness import proxy_checks

logger = logging.getLogger(__name__)


class ApiServer:
    def __init__(self, hub: Hub, decoder: DecoderProcess | None = None) -> None:
        self.hub = hub
        self.decoder = decoder  # when it runs, the API is served there instead
        self.proxy_status: dict[str, object] | None = None  # in the decoder process: the proxy's, as it said
        self.servers: list[HTTPServer] = []
        self.socket_path: Path | None = None
        self._socket_identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket we made
        self.is_running = False
        self.failed: str | None = None  # why the API could not start; the proxy then stops

    def load(self, loader) -> None:
        loader.add_option(
            "streamtap_api_socket", str, defaults.API_SOCKET, "Unix socket of the streamtap API ('' to disable)."
        )
        loader.add_option(
            "streamtap_api_listen", str, "", "Also serve the API on this HOST:PORT (loopback unless a token is set)."
        )
        loader.add_option(
            "streamtap_api_token", str, "",
            "Bearer token the TCP API listener requires ('': generated into api-token beside the socket; "
            "'off': none, for a trusted machine only).",
        )
        loader.add_option(
            "streamtap_api_allowed_hosts", Sequence[str], [],
            "Host names (HOST or HOST:PORT) the TCP API also answers to, besides loopback.",
        )
        loader.add_option(
            "streamtap_api_allowed_origins", Sequence[str], [],
            "Web origins (scheme://host[:port]) allowed to read the TCP API cross-origin (CORS).",
        )
        loader.add_option(
            "streamtap_api_max_readers", int, defaults.MAX_READERS,
            "API readers (event streams and waits for a stream) served at once; the next gets 503 (0: no cap).",
        )
        loader.add_option(
            "streamtap_buffer_events", int, defaults.BUFFER_EVENTS, "Events kept in the hub's ring buffer."
        )
        loader.add_option(
            "streamtap_max_message_chars",
            int,
            defaults.MAX_MESSAGE_CHARS,
            "Characters of text and reasoning kept per stream for its reassembled message (events keep it all).",
        )
        loader.add_option(
            "streamtap_reader_max_lag",
            int,
            defaults.READER_MAX_LAG,
            "Events an API reader may fall behind before it is cut off (it can resume).",
        )
        loader.add_option(
            "streamtap_subscriber_queue", int, defaults.READER_MAX_LAG,
            "Old name of streamtap_reader_max_lag (used when that is not set).",
        )
    def configure(self, updated: set[str]) -> None:
        try:
            self._check(updated)
        except ConfigError as e:
            raise exceptions.OptionsError(str(e)) from None
        if "streamtap_buffer_events" in updated:
            self.hub.set_capacity(ctx.options.streamtap_buffer_events)
        if "streamtap_max_message_chars" in updated:
            self.hub.message_limit = ctx.options.streamtap_max_message_chars
        restart = {"streamtap_api_socket", "streamtap_api_listen", "streamtap_api_token", "streamtap_subscriber_queue",
                   "streamtap_reader_max_lag", "streamtap_api_allowed_hosts", "streamtap_api_allowed_origins",
                   "streamtap_api_max_readers"}
        if self.is_running and updated & restart:
            self.stop()
            self.start()

    def _check(self, updated: set[str]) -> None:
        for name, low in (("streamtap_api_max_readers", 0), ("streamtap_subscriber_queue", 1),
                          ("streamtap_reader_max_lag", 1), ("streamtap_buffer_events", 1),
                          ("streamtap_max_message_chars", 0)):
            if name in updated:
                checks.at_least(name, getattr(ctx.options, name), low)
        if "streamtap_api_allowed_origins" in updated:
            for origin in ctx.options.streamtap_api_allowed_origins:
                if problem := origin_problem(origin):
                    raise ConfigError(f"streamtap_api_allowed_origins: {problem}")
        if ("streamtap_api_listen" in updated or "streamtap_api_token" in updated) and ctx.options.streamtap_api_listen:
            try:
                host, _ = parse_listen(ctx.options.streamtap_api_listen)
            except ValueError as e:
                raise ConfigError(f"streamtap_api_listen: {e}") from None
            token = ctx.options.streamtap_api_token
            checks.beyond_loopback("streamtap_api_listen", host, None if token == OFF else token,
                                   "streamtap_api_token")

    async def running(self) -> None:
        if elsewhere(self.decoder):
            return
        self.is_running = True
        try:
            self.start()
        except (OSError, TokenError) as e:
            # One line, not a traceback; and a proxy nobody can read events from is not
            # worth keeping up.
            self.failed = f"cannot serve the API: {e}"
            logger.error(f"streamtap: {self.failed}")
            ctx.master.shutdown()

    async def done(self) -> None:
        # Readers first get everything published so far (the proxy's final aborts
        # included), then their responses end; then the socket goes.
        if elsewhere(self.decoder):
            return
        await self.hub.close_and_drain()
        self.stop()

    def start(self) -> None:
        try:
            self._start()
        except (OSError, TokenError):
            self.stop()  # release what was bound before the failure, and only that
            raise

    def _start(self) -> None:
        if path := ctx.options.streamtap_api_socket:
            sock = bind_private_unix_socket(Path(path))
            self.socket_path = Path(path)
            self._socket_identity = _identity(self.socket_path)
            local = Access(max_readers=ctx.options.streamtap_api_max_readers)  # 0600: this user only
            app = make_app(self.hub, local, max_lag=_reader_max_lag(), pac=self.pac,
                           readiness=self.readiness)
            server = ApiHTTPServer(app)
            server.add_socket(sock)
            self.servers.append(server)
            logger.info(f"streamtap API listening at unix:{path}")
        if listen := ctx.options.streamtap_api_listen:
            host, port = parse_listen(listen)
            token, where = self._tcp_token()
            try:
                sockets = bind_sockets(port, host)
            except OSError as e:
                raise OSError(f"--api-listen {listen}: {e.strerror or e}") from None
            port = sockets[0].getsockname()[1]
            access = Access(
                hosts=allowed_hosts(host, port, ctx.options.streamtap_api_allowed_hosts),
                origins=frozenset(o.rstrip("/") for o in ctx.options.streamtap_api_allowed_origins),
                token=token,
                max_readers=ctx.options.streamtap_api_max_readers,
            )
            server = ApiHTTPServer(
                make_app(self.hub, access, max_lag=_reader_max_lag(), pac=self.pac,
                         readiness=self.readiness)
            )
            server.add_sockets(sockets)
            self.servers.append(server)
            url = f"http://{bracketed(host)}:{port}"
            logger.info(f"streamtap API listening at {url}")
            if where is not None:  # the token itself never goes to a log
                logger.info(f"streamtap API token in {where}: open the page at {url}/?token=$(cat {where})")
            elif token is None:
                logger.warning("streamtap: the TCP API has no token (streamtap_api_token=off): "
                               "any local process and user can read every captured conversation")

    def _tcp_token(self) -> tuple[str | None, Path | None]:
        """The token the TCP listener requires, and the file it came from when generated."""
        given = ctx.options.streamtap_api_token
        if given == OFF:
            return None, None
        if given:
            return given, None
        where = token_path(ctx.options.streamtap_api_socket)
        return ensure_token(where), where

    def readiness(self) -> dict[str, object]:
        """What /healthz checks: the proxy listens, the CA is loaded, the hub runs."""
        proxy = self.proxy_status if self.proxy_status is not None else proxy_checks()
        return {**proxy, "hub_running": not self.hub.closed}

    def pac(self) -> str:
        """The PAC file for the proxy as it listens now."""
        host = ctx.options.listen_host or "127.0.0.1"
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        port = ctx.options.listen_port or 8080
        hosts = [parse_route(spec).host for spec in ctx.options.streamtap_routes]
        return pac_script(hosts, f"{host}:{port}")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers = []
        if self.socket_path is not None:
            # Only the socket this instance made: another may have taken the path since.
            if _identity(self.socket_path) == self._socket_identity:
                self.socket_path.unlink(missing_ok=True)
            self.socket_path = self._socket_identity = None


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.lstat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _reader_max_lag() -> int:
    """streamtap_reader_max_lag, or its old name streamtap_subscriber_queue when only that was set."""
    options = ctx.options
    if not options.has_changed("streamtap_reader_max_lag") and options.has_changed("streamtap_subscriber_queue"):
        return options.streamtap_subscriber_queue
    return ctx.options.streamtap_reader_max_lag
