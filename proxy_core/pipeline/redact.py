"""Secrets never leave the proxy: header values and query keys are masked in events,
logs and captures."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[redacted]"

SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x-goog-api-key",
        "api-key",
        "cookie",
        "set-cookie",
    }
)
SECRET_QUERY_KEYS = frozenset({"key", "api_key", "apikey", "access_token", "token"})


def redact_headers(fields: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header pairs to a dict of lower-case names; repeated names are joined with ', '."""
    out: dict[str, str] = {}
    for name, value in fields:
        name = name.lower()
        value = REDACTED if name in SECRET_HEADERS else value
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(k.lower() in SECRET_QUERY_KEYS for k, _ in query):
        return url
    masked = [(k, REDACTED if k.lower() in SECRET_QUERY_KEYS else v) for k, v in query]
    return urlunsplit(parts._replace(query=urlencode(masked, safe="[]")))
