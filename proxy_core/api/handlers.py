"""The HTTP API over the hub (tornado): health, metrics, events (SSE or NDJSON), streams.

docs/api.md is the reference. Handlers only read the hub; the per-chunk proxy path
never waits for them.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tornado.iostream
import tornado.web

from proxy_core import __version__
from proxy_core.api.next_answer import next_answer
from proxy_core.api.pump import EventPump
from proxy_core.api.webpage import PAGE
from proxy_core.config import defaults
from proxy_core.hub.envelope import Envelope, dumps
from proxy_core.hub.hub import Hub, StreamRecord
from proxy_core.hub.notices import restart_event
from proxy_core.payloads import PAYLOADS

KEEPALIVE_SECONDS = 15.0
# What `types=` may name: every event type, and the notices a reader can get.
EVENT_TYPES = frozenset(PAYLOADS) | {"gap", "cutoff", "restart"}
STREAM_STATES = ("active", "ended", "aborted", "error")


STALL_SECONDS = 60.0  # a reader whose socket takes nothing for this long is closed
CLIENT_HEADER = "X-Streamtap-Client"  # not CORS-simple: a cross-site form cannot send it


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Access:
    """Who may use a listener. The Unix socket (0600) is private already: `hosts` None.
    A TCP listener answers only under its own names (no DNS rebinding), only to its own
    page or to origins the user allowed (no cross-site reads), and with a token."""

    hosts: frozenset[str] | None = None  # allowed Host headers, lower-case, with port
    origins: frozenset[str] = frozenset()  # origins allowed to read it cross-origin (CORS)
    token: str | None = None
    max_readers: int = 0  # 0: no cap


class BaseHandler(tornado.web.RequestHandler):
    hub: Hub
    access: Access
    max_lag: int
    PARAMS: frozenset[str] = frozenset()  # the query parameters this endpoint knows
    NEEDS_TOKEN = True

    def initialize(self, hub: Hub, access: Access | None = None, max_lag: int = defaults.READER_MAX_LAG,
                   stall_seconds: float = STALL_SECONDS) -> None:
        self.hub = hub
        self.access = access or Access()
        self.token = self.access.token
        self.max_lag = max_lag
        self.stall_seconds = stall_seconds

    def prepare(self) -> None:
        self.set_header("X-Streamtap-Instance", self.hub.instance)
        self.check_access()
        if self.NEEDS_TOKEN and self.request.method != "OPTIONS":  # a preflight carries no token
            self.check_token()
        self.check_params()

    def check_access(self) -> None:
        access = self.access
        if access.hosts is None:
            return
        host = self.request.headers.get("Host", "").lower()
        if host not in access.hosts:
            self.hub.metrics.api_refused["host"] += 1
            raise ApiError(421, f"Host {host or '(none)'!r} is not this API's address (DNS rebinding?); "
                                "a name of your own goes in api.allowed_hosts")
        origin = self.request.headers.get("Origin")
        if origin is not None and origin != f"http://{host}":
            if origin not in access.origins:
                self.hub.metrics.api_refused["origin"] += 1
                raise ApiError(403, f"Origin {origin!r} may not use this API (only its own page; "
                                    "api.allowed_origins lists others)")
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Vary", "Origin")
        elif origin is None and self.request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site"):
            # An <img> or <script> of another site: no Origin header, but the browser says so.
            if self.request.headers.get("Sec-Fetch-Mode") != "navigate" or self.NEEDS_TOKEN:
                self.hub.metrics.api_refused["origin"] += 1
                raise ApiError(403, "a request from another site may not use this API")
        if self.request.method not in ("GET", "HEAD", "OPTIONS") and not self.token:
            # Changing state without a token: only from a program (or the page) that sends
            # a header a cross-site form cannot.
            if CLIENT_HEADER not in self.request.headers:
                self.hub.metrics.api_refused["csrf"] += 1
                raise ApiError(403, f"{self.request.method} needs the token or an {CLIENT_HEADER} header")

    def check_token(self) -> None:
        if self.token:
            # EventSource cannot send headers: the live page passes ?token= instead.
            given = self.request.headers.get("Authorization", "")
            if not given and (query_token := self.get_query_argument("token", None)):
                given = f"Bearer {query_token}"
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                self.set_header("WWW-Authenticate", 'Bearer realm="streamtap"')
                self.hub.metrics.api_refused["token"] += 1
                raise ApiError(401, "missing or wrong bearer token")

    def options(self, *args: str) -> None:
        """CORS preflight, answered only for the origins the user allowed (check_access
        has refused the others)."""
        if "Access-Control-Allow-Origin" not in self._headers:
            raise ApiError(405, "OPTIONS is for cross-origin requests from api.allowed_origins")
        self.set_header("Access-Control-Allow-Methods", "GET, DELETE")
        self.set_header("Access-Control-Allow-Headers", f"Authorization, Last-Event-ID, {CLIENT_HEADER}")
        self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    def admit_reader(self) -> None:
        cap = self.access.max_readers
        if cap and self.hub.subscribers >= cap:
            self.hub.metrics.api_refused["readers"] += 1
            raise ApiError(503, f"too many API readers ({cap}); close one, or raise api.max_readers")

    def check_params(self) -> None:
        if self.request.method == "OPTIONS":
            return
        # A misspelt parameter must not be ignored: `typse=` would follow everything.
        unknown = sorted(set(self.request.query_arguments) - self.PARAMS - {"token"})
        if unknown:
            known = ", ".join(sorted(self.PARAMS)) or "none"
            raise ApiError(400, f"{unknown[0]}: unknown parameter (this endpoint takes: {known})")

    def write_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(dumps(obj) + b"\n")

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, ApiError):
            self.write_json({"error": str(e)}, e.status)
        else:
            super()._handle_request_exception(e)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.finish(dumps({"error": self._reason}) + b"\n")

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise ApiError(400, f"{name}: expected an integer, got {raw!r}") from None

    def float_arg(self, name: str, default: float) -> float:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ApiError(400, f"{name}: expected a number of seconds, got {raw!r}") from None
        if not 0 <= value <= 3600:
            raise ApiError(400, f"{name}: must be between 0 and 3600 seconds")
        return value

    def bool_arg(self, name: str, default: bool) -> bool:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ApiError(400, f"{name}: expected true or false, got {raw!r}")


class EventStreamMixin(BaseHandler):
    """Writes hub events from an offset on, as SSE or NDJSON, optionally following."""

    _gone = False
    _pump: EventPump | None = None

    def on_connection_close(self) -> None:
        self._gone = True
        if self._pump is not None:
            self._pump.close()

    def wants_ndjson(self) -> bool:
        fmt = self.get_query_argument("format", "")
        if fmt not in ("", "sse", "ndjson"):
            raise ApiError(400, f"format: expected sse or ndjson, got {fmt!r}")
        if fmt:
            return fmt == "ndjson"
        return "application/x-ndjson" in self.request.headers.get("Accept", "")

    def resume_point(self) -> int:
        """The offset the reader has already seen: Last-Event-ID wins over since=."""
        last_id = self.request.headers.get("Last-Event-ID")
        if last_id:
            try:
                return int(last_id)
            except ValueError:
                raise ApiError(400, f"Last-Event-ID: expected an offset, got {last_id!r}") from None
        raw = self.get_query_argument("since", None)
        if raw == "now":
            return self.hub.last_offset
        since = self.int_arg("since", 0)
        assert since is not None
        if since < 0:
            raise ApiError(400, "since: must be an offset >= 0 or 'now'")
        return since

    async def send_events(
        self, after: int, match: Callable[[Envelope], bool], follow: bool, stream: StreamRecord | None = None
    ) -> None:
        """Events with offset > `after`, then (when following) live ones, fed by an
        EventPump (see pump.py) that the hub drives as it publishes. With `stream`, only
        that stream's events, read through its index, up to its terminal event."""
        ndjson = self.wants_ndjson()
        self.admit_reader()
        self.set_header("Content-Type", "application/x-ndjson" if ndjson else "text/event-stream")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")
        pump = self._pump = EventPump(self, self.hub, after, match, follow=follow, ndjson=ndjson,
                                      max_lag=self.max_lag, stream=stream)
        self.hub.subscribers += 1
        try:
            if after > self.hub.last_offset:
                # An offset this process never gave out: the reader knew an earlier run
                # (EventSource reconnecting after a restart). Say so and start over.
                pump.write_notice(restart_event(after, self.hub.instance, self.hub.clock()), 0)
                pump.cursor = 0
            await self.flush()  # headers now: a follower knows it is connected
            self.hub.follow(pump)
            pump.pump()
            tick = min(KEEPALIVE_SECONDS, self.stall_seconds)
            while not pump.done.done():
                if pump.stalled_for() > self.stall_seconds:
                    # Its socket took nothing for that long: free the connection (it can resume).
                    self.hub.metrics.api_refused["stalled"] += 1
                    pump.abandon()
                    break
                quiet = time.monotonic() - pump.last_write
                if quiet >= KEEPALIVE_SECONDS:
                    pump.keepalive()
                    quiet = 0.0
                await asyncio.wait({pump.done}, timeout=min(tick, KEEPALIVE_SECONDS - quiet))
        except tornado.iostream.StreamClosedError:
            return
        finally:
            self.hub.unfollow(pump)
            self.hub.subscribers -= 1


class HealthHandler(BaseHandler):
    def initialize(  # type: ignore[override]
        self, readiness: Callable[[], dict[str, Any]] | None = None, **kwargs: Any
    ) -> None:
        super().initialize(**kwargs)
        self.readiness = readiness

    def get(self) -> None:
        checks: dict[str, Any] = self.readiness() if self.readiness else {"hub_running": not self.hub.closed}
        serving = all(bool(v) for v in checks.values())
        status = "ok" if serving else ("stopping" if self.hub.closed else "not ready")
        self.write_json(
            {
                "status": status,
                "checks": checks,
                "version": __version__,
                "instance": self.hub.instance,
                "process": os.getpid(),  # the process holding the hub: the decoder process when it runs
                "subscribers": self.hub.subscribers,
                "last_offset": self.hub.last_offset,
                "oldest_offset": self.hub.ring.oldest if self.hub.last_offset else None,
                "active_streams": self.hub.active_streams,
                "streams": len(self.hub.streams),
            },
            200 if serving else 503,
        )


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.hub.metrics.render(self.hub.active_streams, self.hub.subscribers, self.hub.last_offset))


class EventsHandler(EventStreamMixin):
    PARAMS = frozenset({"since", "stream", "host", "types", "follow", "format"})

    async def get(self) -> None:
        after = self.resume_point()
        stream = self.get_query_argument("stream", None)
        host = self.get_query_argument("host", None)
        types = {t.strip() for t in self.get_query_argument("types", "").split(",") if t.strip()}
        if bad := sorted(types - EVENT_TYPES):
            raise ApiError(400, f"types: unknown event type {bad[0]!r} (known: {', '.join(sorted(EVENT_TYPES))})")
        follow = self.bool_arg("follow", True)

        def match(env: Envelope) -> bool:
            return (
                (stream is None or env.stream == stream)
                and (host is None or env.host == host)
                and (not types or env.type in types)
            )

        # A stream the hub still knows is read through its index; one it forgot (or
        # never had) by scanning the ring.
        record = self.hub.streams.get(stream) if stream is not None else None
        await self.send_events(after, match, follow, stream=record)


class StreamsHandler(BaseHandler):
    PARAMS = frozenset({"state"})

    def get(self) -> None:
        state = self.get_query_argument("state", None)
        if state is not None and state not in STREAM_STATES:
            raise ApiError(400, f"state: expected one of {', '.join(STREAM_STATES)}, got {state!r}")
        streams = [r.summary() for r in self.hub.streams.values() if state is None or r.state == state]
        self.write_json({"streams": streams, "last_offset": self.hub.last_offset})

    def delete(self) -> None:
        self.write_json({"forgotten": self.hub.forget_finished()})


class StreamHandler(BaseHandler):
    def get(self, stream_id: str) -> None:
        record = self.hub.streams.get(stream_id)
        if record is None:
            raise ApiError(404, f"no stream {stream_id!r}")
        self.write_json({**record.summary(), "message": record.message()})

    def delete(self, stream_id: str) -> None:
        record = self.hub.streams.get(stream_id)
        if record is None:
            raise ApiError(404, f"no stream {stream_id!r}")
        if record.active:
            raise ApiError(409, f"stream {stream_id} is active; it can be forgotten once it has ended")
        del self.hub.streams[stream_id]
        self.write_json({"forgotten": 1})


class NextStreamHandler(EventStreamMixin):
    """The first answer matching host= and tag= that starts after this request arrived:
    a program that triggers a request can wait for exactly its own answer. Warm-ups and
    hand-off stubs are never that answer (api/next_answer.py)."""

    PARAMS = frozenset({"host", "tag", "timeout", "after"})

    async def get(self) -> None:
        host = self.get_query_argument("host", None)
        tag = self.get_query_argument("tag", None)
        timeout = self.float_arg("timeout", 30.0)
        self.admit_reader()
        self.hub.subscribers += 1
        try:
            await self._wait_for_stream(host, tag, timeout)
        finally:
            self.hub.subscribers -= 1

    async def _wait_for_stream(self, host: str | None, tag: str | None, timeout: float) -> None:
        after = self.int_arg("after")
        record = await next_answer(
            self.hub, self.hub.last_offset if after is None else after,  # default: streams from now on
            lambda req: (host is None or req.get("host") == host) and (tag is None or req.get("tag") == tag),
            self.hub.clock() + timeout, lambda: self._gone, KEEPALIVE_SECONDS)
        if record is None:
            self.set_status(204)
            self.finish()
            return
        self.write_json(record.summary())


class StreamEventsHandler(EventStreamMixin):
    PARAMS = frozenset({"since", "follow", "format"})

    async def get(self, stream_id: str) -> None:
        record = self.hub.streams.get(stream_id)
        if record is None:
            raise ApiError(404, f"no stream {stream_id!r}")
        has_resume = "Last-Event-ID" in self.request.headers or self.get_query_argument("since", None)
        after = self.resume_point() if has_resume else record.first_offset - 1
        follow = self.bool_arg("follow", True)
        await self.send_events(after, lambda env: env.stream == stream_id, follow, stream=record)


class PageHandler(BaseHandler):
    """GET /: the live page. The page itself holds no data (it reads /v1/events), so it
    needs no token; its EventSource does."""

    NEEDS_TOKEN = False

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        # img-src data: is for the page's inline icon (else Chromium asks for /favicon.ico).
        self.set_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
                                                   "style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                                                   "connect-src 'self'")
        self.finish(PAGE)


class PacHandler(BaseHandler):
    """GET /proxy.pac: no token needed, as browsers cannot send one; it tells only which
    hosts go through the proxy."""

    NEEDS_TOKEN = False

    def initialize(self, pac: Callable[[], str], **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(**kwargs)
        self.pac = pac

    def get(self) -> None:
        self.set_header("Content-Type", "application/x-ns-proxy-autoconfig")
        self.finish(self.pac())


def make_app(
    hub: Hub,
    access: Access | None = None,
    max_lag: int = defaults.READER_MAX_LAG,
    pac: Callable[[], str] | None = None,
    readiness: Callable[[], dict[str, Any]] | None = None,
    stall_seconds: float = STALL_SECONDS,
) -> tornado.web.Application:
    from proxy_core.api.openai_compat import ChatCompletionsHandler  # it builds on these handlers

    kwargs = {"hub": hub, "access": access or Access(), "max_lag": max_lag, "stall_seconds": stall_seconds}
    extra = [(r"/proxy.pac", PacHandler, {**kwargs, "pac": pac})] if pac is not None else []
    return tornado.web.Application(
        [
            *extra,
            (r"/", PageHandler, kwargs),
            (r"/healthz", HealthHandler, {**kwargs, "readiness": readiness}),
            (r"/metrics", MetricsHandler, kwargs),
            (r"/v1/events", EventsHandler, kwargs),
            (r"/v1/streams", StreamsHandler, kwargs),
            (r"/v1/streams/next", NextStreamHandler, kwargs),
            (r"/v1/streams/([^/]+)", StreamHandler, kwargs),
            (r"/v1/streams/([^/]+)/events", StreamEventsHandler, kwargs),
            (r"/v1/chat/completions", ChatCompletionsHandler, kwargs),
        ],
        default_handler_class=NotFoundHandler,
        default_handler_args=kwargs,
    )


class NotFoundHandler(BaseHandler):
    def check_params(self) -> None:
        pass  # no such endpoint: that is the error to report

    def prepare(self) -> None:
        super().prepare()
        raise ApiError(404, f"no such endpoint: {self.request.path}")

