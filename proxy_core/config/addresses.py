"""Addresses in settings: listen specs, loopback, the Host names and origins the TCP API
answers to, and connect-to overrides. Each check says what is wrong in one line."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit


def parse_listen(spec: str) -> tuple[str, int]:
    host, colon, port = spec.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{spec!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def allowed_hosts(listen_host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host headers a TCP listener answers to: its loopback names and its own address
    with its port, and the names the user added (HOST means HOST:port)."""
    hosts: set[str] = set()
    for name in ("127.0.0.1", "localhost", "[::1]", bracketed(listen_host), *extra):
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


def bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("::ffff:")).is_loopback  # IPv4-mapped too
    except ValueError:
        return False


def parse_connect_to(spec: str) -> tuple[tuple[str, int], tuple[str, int]]:
    """`HOST:PORT=ADDR:PORT`, as curl's --connect-to HOST:PORT:ADDR:PORT."""
    source, eq, target = spec.partition("=")
    if not eq:
        raise ValueError(f"{spec!r}: expected HOST:PORT=ADDRESS:PORT")
    return _host_port(source, spec), _host_port(target, spec)


def _host_port(text: str, spec: str) -> tuple[str, int]:
    host, colon, port = text.strip().rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{spec!r}: {text!r} is not HOST:PORT")
    return host.strip("[]").lower(), int(port)


SINK_SCHEMES = ("nats", "redis", "otlp+http")


def sink_problem(url: str) -> str | None:
    """Why `url` does not name a sink, if it does not."""
    parts = urlsplit(url)
    if parts.scheme not in SINK_SCHEMES:
        return (f"{url!r}: unknown sink (expected nats://HOST:PORT/PREFIX, redis://HOST:PORT/DB?stream=KEY "
                "or otlp+http://HOST:PORT)")
    if not parts.hostname:
        return f"{url!r}: no host"
    try:
        _ = parts.port  # raises for a port out of range or not a number
    except ValueError:
        return f"{url!r}: bad port"
    return None
