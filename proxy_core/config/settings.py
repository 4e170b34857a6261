"""streamtap's YAML configuration: read, checked, and turned into mitmproxy options.

Every problem is reported as one line naming the key: `routes[1].provider: unknown
provider 'x' (one of: ...)`. docs/config.md documents every key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from proxy_core.config import checks, defaults
from proxy_core.config.addresses import origin_problem, parse_connect_to, parse_listen, sink_problem
from proxy_core.config.api_token import OFF
from proxy_core.config.checks import ConfigError
from proxy_core.config.routes import (
    DEFAULT_ROUTES,
    WEB_APPS,
    Route,
    RouteError,
    default_routes,
    make_route,
    permitted_domains,
)


@dataclass(slots=True)
class Config:
    listen: str = defaults.LISTEN
    upstream_proxies: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)  # HOST_GLOB=URL[,URL] | HOST_GLOB=direct
    auth: str | None = None
    certs_dir: str = defaults.CERTS_DIR
    api_socket: str = defaults.API_SOCKET
    api_listen: str | None = None
    api_token: str | None = None  # None: generated for a TCP listener; "off": none
    api_allowed_hosts: list[str] = field(default_factory=list)
    api_allowed_origins: list[str] = field(default_factory=list)
    api_max_readers: int = defaults.MAX_READERS
    buffer_events: int = defaults.BUFFER_EVENTS
    max_message_chars: int = defaults.MAX_MESSAGE_CHARS
    idle_timeout: float = defaults.IDLE_TIMEOUT
    decode_window: float = defaults.DECODE_WINDOW
    decoder_process: str = defaults.DECODER_PROCESS  # auto | on | off
    max_event_bytes: int = defaults.MAX_EVENT_BYTES
    capture_dir: str | None = None
    sinks: list[str] = field(default_factory=list)  # nats://... and redis://... URLs
    routes: list[Route] = field(default_factory=lambda: [make_route(**r) for r in DEFAULT_ROUTES])
    connect_to: dict[str, str] = field(default_factory=dict)
    name_constraints: bool = False
    passthrough_on_reject: bool = False
    upstream_ca: str | None = None  # a CA bundle for upstreams with a private CA

    def permitted_domains(self) -> list[str] | None:
        """The CA's DNS name constraints, when `ca.name_constraints` asks for them."""
        return permitted_domains(r.host for r in self.routes) if self.name_constraints else None

    def check(self) -> None:
        """Checks that span keys (a single key is checked where it is read)."""
        host, _ = _listen("proxy.listen", self.listen)
        checks.beyond_loopback("proxy.listen", host, self.auth, "proxy.auth (USER:PASS)")
        if self.api_listen:
            api_host, _ = _listen("api.listen", self.api_listen)
            checks.beyond_loopback("api.listen", api_host, None if self.api_token == OFF else self.api_token,
                                   "api.token")

    def to_options(self) -> dict[str, Any]:
        """The mitmproxy options (ours and its own) this configuration stands for."""
        host, port = _listen("proxy.listen", self.listen)
        return {
            "listen_host": host,
            "listen_port": port,
            # Regular mode even with upstream proxies: UpstreamProxies picks, per host,
            # the proxy a connection goes through (or none), with failover.
            "mode": ["regular"],
            # Lazy: the server connection opens once the route (and its proxy) is known.
            "connection_strategy": "lazy" if self.upstream_proxies or self.via else "eager",
            "streamtap_upstream_proxies": list(self.upstream_proxies),
            "streamtap_via": list(self.via),
            "proxyauth": self.auth,
            "confdir": self.certs_dir,
            "streamtap_api_socket": self.api_socket,
            "streamtap_api_listen": self.api_listen or "",
            "streamtap_api_token": self.api_token or "",
            "streamtap_api_allowed_hosts": list(self.api_allowed_hosts),
            "streamtap_api_allowed_origins": list(self.api_allowed_origins),
            "streamtap_api_max_readers": self.api_max_readers,
            "streamtap_buffer_events": self.buffer_events,
            "streamtap_max_message_chars": self.max_message_chars,
            "streamtap_max_event_bytes": self.max_event_bytes,
            "streamtap_idle_timeout": str(self.idle_timeout),
            "streamtap_decode_window": str(self.decode_window),
            "streamtap_decoder_process": self.decoder_process,
            "streamtap_capture_dir": self.capture_dir or "",
            "streamtap_sinks": list(self.sinks),
            "streamtap_routes": [r.spec() for r in self.routes],
            "streamtap_connect_to": [f"{k}={v}" for k, v in self.connect_to.items()],
            "streamtap_passthrough_on_reject": self.passthrough_on_reject,
            **({"ssl_verify_upstream_trusted_ca": self.upstream_ca} if self.upstream_ca else {}),
        }


SCHEMA: dict[str, Any] = {
    "proxy": {"listen": str, "upstream_proxy": (str, list), "auth": str, "passthrough_on_reject": bool,
              "upstream_ca": str},
    "certs_dir": str,
    "ca": {"name_constraints": bool},
    "api": {"socket": str, "listen": str, "token": (str, bool), "allowed_hosts": list, "allowed_origins": list,
            "max_readers": int},
    "hub": {"buffer_events": int, "max_message_chars": int},
    "capture": {
        "buffer_events": int,  # old place of hub.buffer_events
        "max_message_chars": int,  # old place of hub.max_message_chars
        "idle_timeout": (int, float),
        "decode_window": (int, float),
        "decoder_process": (str, bool),  # YAML reads a bare on/off as a boolean
        "max_event_bytes": int,
        "dir": str,
        "sinks": list,
    },
    "routes": list,
    "web_apps": (list, bool),
    "connect_to": dict,
}


def load_config(path: str | Path | None) -> Config:
    if path is None:
        return Config()
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    try:
        return config_from_dict(data or {})
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def config_from_dict(data: Any) -> Config:
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of keys")
    _check_keys(data, SCHEMA, "")
    cfg = Config()
    proxy = data.get("proxy") or {}
    api = data.get("api") or {}
    capture = data.get("capture") or {}
    cfg.listen = proxy.get("listen") or cfg.listen
    _listen("proxy.listen", cfg.listen)
    if proxy.get("upstream_proxy"):
        value = proxy["upstream_proxy"]
        cfg.upstream_proxies = [_upstream_proxy(u) for u in ([value] if isinstance(value, str) else value)]
    if proxy.get("auth"):
        if ":" not in proxy["auth"]:
            raise ConfigError("proxy.auth: expected USER:PASS")
        cfg.auth = proxy["auth"]
    cfg.certs_dir = data.get("certs_dir") or cfg.certs_dir
    cfg.name_constraints = bool((data.get("ca") or {}).get("name_constraints"))
    cfg.passthrough_on_reject = bool(proxy.get("passthrough_on_reject"))
    cfg.upstream_ca = proxy.get("upstream_ca") or None
    if "socket" in api:
        cfg.api_socket = api["socket"] or ""
    cfg.api_listen = api.get("listen") or None
    cfg.api_token = _api_token(api.get("token"))
    cfg.api_allowed_hosts = _strings("api.allowed_hosts", api.get("allowed_hosts") or [])
    cfg.api_allowed_origins = _strings("api.allowed_origins", api.get("allowed_origins") or [])
    for origin in cfg.api_allowed_origins:
        if problem := origin_problem(origin):
            raise ConfigError(f"api.allowed_origins: {problem}")
    if "max_readers" in api:
        cfg.api_max_readers = checks.at_least("api.max_readers", api["max_readers"], 0)
    hub = _hub_section(data)
    if "buffer_events" in hub:
        cfg.buffer_events = checks.positive(hub["buffer_events"][0], hub["buffer_events"][1])
    if "max_message_chars" in hub:
        cfg.max_message_chars = checks.at_least(*hub["max_message_chars"], 0)
    if "max_event_bytes" in capture:
        cfg.max_event_bytes = checks.max_event_bytes("capture.max_event_bytes", capture["max_event_bytes"])
    if "idle_timeout" in capture:
        cfg.idle_timeout = checks.positive("capture.idle_timeout", capture["idle_timeout"])
    if "decode_window" in capture:
        cfg.decode_window = checks.decode_window("capture.decode_window", capture["decode_window"])
    if "decoder_process" in capture:
        cfg.decoder_process = checks.decoder_process("capture.decoder_process", capture["decoder_process"])
    cfg.capture_dir = capture.get("dir") or None
    cfg.sinks = _strings("capture.sinks", capture.get("sinks") or [])
    for url in cfg.sinks:
        if problem := sink_problem(url):
            raise ConfigError(f"capture.sinks: {problem}")
    if data.get("web_apps") is not None:  # which browser chat apps the default routes decode
        cfg.routes = [make_route(**r) for r in default_routes(_web_apps(data["web_apps"]))]
    if "routes" in data:
        cfg.routes, cfg.via = _routes(data["routes"])
    cfg.connect_to = _connect_to(data.get("connect_to") or {})
    cfg.check()
    return cfg


def _hub_section(data: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """hub.* keys as (key name, value); capture.buffer_events and capture.max_message_chars
    are their old names, still read (hub.* wins, and naming one both ways is refused)."""
    out: dict[str, tuple[str, Any]] = {}
    hub, capture = data.get("hub") or {}, data.get("capture") or {}
    for key in ("buffer_events", "max_message_chars"):
        if key in hub and key in capture:
            raise ConfigError(f"hub.{key}: also given as capture.{key} (its old name): keep one")
        if key in hub:
            out[key] = (f"hub.{key}", hub[key])
        elif key in capture:
            out[key] = (f"capture.{key}", capture[key])
    return out


def _web_apps(value: list[Any] | bool) -> list[str]:
    """web_apps: true (all), false (none), or a list of chatgpt, claude, gemini, aistudio."""
    if isinstance(value, bool):
        return list(WEB_APPS) if value else []
    for app in value:
        if app not in WEB_APPS:
            raise ConfigError(f"web_apps: unknown web app {app!r} (one of: {', '.join(WEB_APPS)})")
    return list(value)


def _api_token(value: str | bool | None) -> str | None:
    """api.token: a token; unset for a generated one; false (or "off") for none."""
    if value is False or value == OFF:
        return OFF
    if value is True:
        raise ConfigError("api.token: a token string, or false for none (unset: a generated one)")
    return value or None


def _strings(key: str, values: list[Any]) -> list[str]:
    if not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{key}: expected a list of strings")
    return list(values)


def _check_keys(data: dict[str, Any], schema: dict[str, Any], prefix: str) -> None:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in schema:
            raise ConfigError(f"{name}: unknown key (expected one of: {', '.join(schema)})")
        expected = schema[key]
        if value is None:
            continue
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{name}: must be a mapping")
            _check_keys(value, expected, f"{name}.")
        elif not isinstance(value, expected) or (
            isinstance(value, bool) and bool not in (expected if isinstance(expected, tuple) else (expected,))
        ):
            kinds = expected if isinstance(expected, tuple) else (expected,)
            names = {"str": "a string", "int": "an integer", "float": "a number", "list": "a list",
                     "dict": "a mapping", "bool": "true or false"}
            want = " or ".join(names[k.__name__] for k in kinds)
            raise ConfigError(f"{name}: must be {want}, not {value!r}")


def _listen(key: str, value: str) -> tuple[str, int]:
    try:
        return parse_listen(value)
    except ValueError as e:
        raise ConfigError(f"{key}: {e}") from None


def _upstream_proxy(url: object, key: str = "proxy.upstream_proxy") -> str:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}: {url!r} is not an http:// or https:// proxy URL")
    return str(url)


def _routes(value: Any) -> tuple[list[Route], list[str]]:
    routes, via = [], []
    for i, item in enumerate(value):
        key = f"routes[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{key}: must be a mapping with host, path and provider")
        unknown = set(item) - {"host", "path", "provider", "via"}
        if unknown:
            raise ConfigError(f"{key}.{sorted(unknown)[0]}: unknown key (expected host, path, provider, via)")
        try:
            routes.append(make_route(item.get("host"), item.get("path"), item.get("provider")))
        except RouteError as e:
            raise ConfigError(f"{key}.{e}") from None
        if item.get("via") is not None:
            choice = item["via"]
            if choice != "direct":
                urls = [choice] if isinstance(choice, str) else choice
                if not isinstance(urls, list) or not urls:
                    raise ConfigError(f"{key}.via: a proxy URL, a list of them, or 'direct'")
                choice = ",".join(_upstream_proxy(u, f"{key}.via") for u in urls)
            via.append(f"{routes[-1].host}={choice}")
    return routes, via


def _connect_to(value: dict[str, Any]) -> dict[str, str]:
    out = {}
    for source, target in value.items():
        try:
            parse_connect_to(f"{source}={target}")
        except ValueError as e:
            raise ConfigError(f"connect_to: {e}") from None
        out[str(source)] = str(target)
    return out
