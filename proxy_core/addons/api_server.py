"""ApiServer: serves the hub's API on a Unix socket (0600) and, optionally, loopback TCP."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import stat
import typing
from collections.abc import Sequence
from pathlib import Path

from mitmproxy import ctx, exceptions
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets, bind_unix_socket

from ..api import Access, make_app
from ..api_token import OFF, TokenError, ensure_token, token_path
from ..hub import DEFAULT_MESSAGE_CHARS, Hub
from ..pac import pac_script
from ..routes import parse_route

logger = logging.getLogger(__name__)


SEND_BUFFER = 256 * 1024  # kernel buffering per API reader: a reader's backlog is bounded here
DEFAULT_MAX_READERS = 64
# The API takes no request bodies; requests are small and come at once.
LIMITS = {"max_header_size": 16 * 1024, "max_body_size": 64 * 1024, "idle_connection_timeout": 60.0,
          "body_timeout": 10.0}


class ApiHTTPServer(HTTPServer):
    """Every API connection gets a bounded kernel send buffer, so that a reader that stops
    reading is noticed (and cut off) after a known amount, whatever the system defaults;
    request line and headers are capped (16 KiB) and idle connections closed (60 s)."""

    def initialize(self, request_callback, **kwargs) -> None:  # type: ignore[no-untyped-def,override]
        super().initialize(request_callback, **{**LIMITS, **kwargs})

    def handle_stream(self, stream, address) -> None:  # type: ignore[no-untyped-def]
        try:
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            pass
        super().handle_stream(stream, address)


def parse_listen(spec: str) -> tuple[str, int]:
    host, colon, port = spec.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{spec!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def allowed_hosts(listen_host: str, port: int, extra: typing.Iterable[str] = ()) -> frozenset[str]:
    """The Host headers a TCP listener answers to: its loopback names and its own address
    with its port, and the names the user added (HOST means HOST:port)."""
    hosts: set[str] = set()
    for name in ("127.0.0.1", "localhost", "[::1]", _bracketed(listen_host), *extra):
        name = name.lower()
        if re.search(r":\d+$", name) and not name.endswith("]"):
            hosts.add(name)  # HOST:PORT as given
        else:
            hosts.add(f"{name}:{port}")
            if port == 80:  # browsers leave the default port out
                hosts.add(name)
    return frozenset(hosts)


def origin_problem(origin: str) -> str | None:
    scheme, sep, rest = origin.partition("://")
    if scheme not in ("http", "https") or not sep or not rest or "/" in rest.rstrip("/"):
        return f"{origin!r} is not an origin (scheme://host[:port])"
    return None


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiServer:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.servers: list[HTTPServer] = []
        self.socket_path: Path | None = None
        self._socket_identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket we made
        self.is_running = False
        self.failed: str | None = None  # why the API could not start; the proxy then stops

    def load(self, loader) -> None:
        loader.add_option(
            "streamtap_api_socket", str, "run/streamtap.sock", "Unix socket of the streamtap API ('' to disable)."
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
            "streamtap_api_max_readers", int, DEFAULT_MAX_READERS,
            "API readers (event streams and waits for a stream) served at once; the next gets 503 (0: no cap).",
        )
        loader.add_option("streamtap_buffer_events", int, 100_000, "Events kept in the hub's ring buffer.")
        loader.add_option(
            "streamtap_max_message_chars",
            int,
            DEFAULT_MESSAGE_CHARS,
            "Characters of text and reasoning kept per stream for its reassembled message (events keep it all).",
        )
        loader.add_option(
            "streamtap_subscriber_queue",
            int,
            10_000,
            "Events an API reader may fall behind before it is cut off (it can resume).",
        )

    def configure(self, updated: set[str]) -> None:
        if "streamtap_api_max_readers" in updated and ctx.options.streamtap_api_max_readers < 0:
            raise exceptions.OptionsError("streamtap_api_max_readers: must be 0 (no cap) or more")
        if "streamtap_api_allowed_origins" in updated:
            for origin in ctx.options.streamtap_api_allowed_origins:
                if problem := origin_problem(origin):
                    raise exceptions.OptionsError(f"streamtap_api_allowed_origins: {problem}")
        if "streamtap_subscriber_queue" in updated and ctx.options.streamtap_subscriber_queue < 1:
            raise exceptions.OptionsError("streamtap_subscriber_queue: must be at least 1")
        if "streamtap_buffer_events" in updated:
            if ctx.options.streamtap_buffer_events < 1:
                raise exceptions.OptionsError("streamtap_buffer_events: must be at least 1")
            self.hub.set_capacity(ctx.options.streamtap_buffer_events)
        if "streamtap_max_message_chars" in updated:
            if ctx.options.streamtap_max_message_chars < 0:
                raise exceptions.OptionsError("streamtap_max_message_chars: must be 0 or more")
            self.hub.message_limit = ctx.options.streamtap_max_message_chars
        if "streamtap_api_listen" in updated or "streamtap_api_token" in updated:
            if ctx.options.streamtap_api_listen:
                try:
                    host, _ = parse_listen(ctx.options.streamtap_api_listen)
                except ValueError as e:
                    raise exceptions.OptionsError(f"streamtap_api_listen: {e}") from None
                if not is_loopback(host) and ctx.options.streamtap_api_token in ("", OFF):
                    raise exceptions.OptionsError(
                        f"streamtap_api_listen: {host} is not loopback; set streamtap_api_token to serve it"
                    )
        restart = {"streamtap_api_socket", "streamtap_api_listen", "streamtap_api_token", "streamtap_subscriber_queue",
                   "streamtap_api_allowed_hosts", "streamtap_api_allowed_origins", "streamtap_api_max_readers"}
        if self.is_running and updated & restart:
            self.stop()
            self.start()

    async def running(self) -> None:
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
            app = make_app(self.hub, local, max_lag=ctx.options.streamtap_subscriber_queue, pac=self.pac,
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
                make_app(self.hub, access, max_lag=ctx.options.streamtap_subscriber_queue, pac=self.pac,
                         readiness=self.readiness)
            )
            server.add_sockets(sockets)
            self.servers.append(server)
            url = f"http://{_bracketed(host)}:{port}"
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
        proxyserver = ctx.master.addons.get("proxyserver")
        listening = [
            f"{host}:{port}"
            for server in (proxyserver.servers if proxyserver else [])
            if server.is_running
            for host, port, *_ in server.listen_addrs
        ]
        tlsconfig = ctx.master.addons.get("tlsconfig")
        return {
            "proxy_listening": listening,
            "ca_loaded": bool(tlsconfig is not None and tlsconfig.certstore is not None),
            "hub_running": not self.hub.closed,
        }

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


def bind_private_unix_socket(path: Path) -> socket.socket:
    """Bind `path` with mode 0600 in a 0700 directory, refusing to steal a live socket."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise OSError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: left by a process that did not shut down
        else:
            raise OSError(f"another process is serving on {path} (a streamtap already running? "
                          "stop it, or give this one --api-socket PATH)")
        finally:
            probe.close()
    old_umask = os.umask(0o177)
    try:
        return bind_unix_socket(str(path), mode=0o600)
    finally:
        os.umask(old_umask)
