"""Secrets never leave the proxy: header values and query keys are masked in events,
logs and captures."""

from __future__ import annotations

import re
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
        # Codex signed in with ChatGPT sends its account id beside the bearer token.
        "chatgpt-account-id",
        "x-amz-security-token",
        "x-auth-token",
        "x-csrf-token",
        # The browser chat apps (docs/formats.md): ChatGPT's resume token and anti-abuse
        # tokens, device ids, XSRF values.
        "x-conduit-token",
        "openai-sentinel-chat-requirements-token",
        "openai-sentinel-proof-token",
        "openai-sentinel-turnstile-token",
        "oai-device-id",
        "anthropic-device-id",
        "x-xsrf-token",
    }
)
SECRET_QUERY_KEYS = frozenset({"key", "api_key", "apikey", "access_token", "token", "at", "f.sid"})
# Account ids in paths: claude.ai's organization, the user of ChatGPT's topic socket
# (ws.chatgpt.com/.../ws/user/<id>, whose query is a credential as a whole).
_ACCOUNT_PATH = re.compile(r"(/api/organizations/)[^/?#]+")
_SOCKET_USER = re.compile(r"(/ws/user/)[^/?#]+(\?[^#]*)?")


def redact_headers(fields: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header pairs to a dict of lower-case names; repeated names are joined with ', '."""
    out: dict[str, str] = {}
    for name, value in fields:
        name = name.lower()
        value = REDACTED if name in SECRET_HEADERS else value
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def redact_url(url: str) -> str:
    if "/organizations/" in url:
        url = _ACCOUNT_PATH.sub(r"\1" + REDACTED, url)
    if "/ws/user/" in url:
        url = _SOCKET_USER.sub(lambda m: m.group(1) + REDACTED + ("?" + REDACTED if m.group(2) else ""), url)
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(k.lower() in SECRET_QUERY_KEYS for k, _ in query):
        return url
    masked = [(k, REDACTED if k.lower() in SECRET_QUERY_KEYS else v) for k, v in query]
    return urlunsplit(parts._replace(query=urlencode(masked, safe="[]")))
