"""Which hosts are intercepted, and which requests on them are decoded, by which provider.

A route is a host glob (`api.openai.com`, `*.example.com`), an optional path regex
(searched, not anchored, against path and query) and a provider name. Hosts with no
route are never decrypted.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass

from proxy_core.providers import PROVIDERS


class RouteError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Route:
    host: str
    path: re.Pattern[str] | None
    provider: str

    def matches_host(self, host: str) -> bool:
        return fnmatch.fnmatchcase(host.lower().rstrip("."), self.host)

    def matches(self, host: str, path: str) -> bool:
        return self.matches_host(host) and (self.path is None or self.path.search(path) is not None)

    def spec(self) -> str:
        return f"{self.host}{':' + self.path.pattern if self.path else ''}={self.provider}"


DEFAULT_ROUTES: tuple[dict[str, str], ...] = (
    # Model answers only, streamed or not (docs/config.md says why each path): not
    # /v1/messages/count_tokens or /batches, /v1/responses/{id} or /input_tokens,
    # :countTokens, model lists. Code Assist is Gemini CLI signed in with Google
    # (cloudcode-pa, daily-/staging-/autopush- too); loadCodeAssist & co. stay out.
    {"host": "api.openai.com", "path": r"^/v1/(chat/completions|responses)/?(\?|$)", "provider": "openai"},
    {"host": "api.anthropic.com", "path": r"^/v1/messages/?(\?|$)", "provider": "anthropic"},
    {"host": "generativelanguage.googleapis.com", "path": r":(streamGenerateContent|generateContent)(\?|$)",
     "provider": "gemini"},
    {"host": "*cloudcode-pa.googleapis.com", "path": r"^/v1internal:(streamGenerateContent|generateContent)(\?|$)",
     "provider": "codeassist"},
    {"host": "alkalimakersuite-pa.clients6.google.com", "path": "GenerateContent", "provider": "aistudio"},
    # WebSockets (pipeline/websocket.py): /v1/responses above also takes Codex's Responses
    # over WebSocket; Realtime; Codex signed in with ChatGPT (decrypts chatgpt.com, decodes only this path).
    {"host": "api.openai.com", "path": r"^/v1/realtime/?(\?|$)", "provider": "openai-realtime"},
    {"host": "chatgpt.com", "path": r"^/backend-api/codex/responses/?(\?|$)", "provider": "openai"},  # and SSE
    # Browser chat apps (docs/formats.md; on by default, `web_apps:` in the config turns
    # each off): ChatGPT's turn, its resume and its WebSocket topics (the stream hand-off), claude.ai's
    # completion, Gemini's StreamGenerate. AI Studio is the aistudio route above.
    {"host": "chatgpt.com", "path": r"^/backend-(api|anon)/(f/)?conversation(/resume)?/?(\?|$)",
     "provider": "chatgpt_web"},
    {"host": "ws.chatgpt.com", "path": r"/ws/user/", "provider": "chatgpt_web"},  # the hand-off's topics
    {"host": "claude.ai", "path": r"^/api/organizations/[^/]+/chat_conversations/[^/]+/(retry_)?completion/?(\?|$)",
     "provider": "claude_web"},
    {"host": "gemini.google.com",
     "path": r"^/_/BardChatUi/data/assistant\.lamda\.BardFrontendService/StreamGenerate(\?|$)",
     "provider": "gemini_web"},
)

# The web apps `web_apps:` names, and the providers of their default routes.
WEB_APPS: dict[str, str] = {"chatgpt": "chatgpt_web", "claude": "claude_web", "gemini": "gemini_web",
                            "aistudio": "aistudio"}


def default_routes(web_apps: Iterable[str] | None = None) -> list[dict[str, str]]:
    """The default routes, with only the web apps named in `web_apps` (None: all)."""
    off = set() if web_apps is None else {WEB_APPS[a] for a in WEB_APPS if a not in set(web_apps)}
    return [r for r in DEFAULT_ROUTES if r["provider"] not in off]


def make_route(host: object, path: object, provider: object) -> Route:
    if not isinstance(host, str) or not host.strip():
        raise RouteError("host: must be a non-empty host name or glob")
    if ":" in host or "/" in host:
        raise RouteError(f"host: {host!r} must be a bare host name or glob (no port, no path)")
    if path is not None and not isinstance(path, str):
        raise RouteError("path: must be a regular expression string")
    try:
        pattern = re.compile(path) if path else None
    except re.error as e:
        raise RouteError(f"path: invalid regular expression {path!r}: {e}") from None
    if provider not in PROVIDERS:
        raise RouteError(f"provider: unknown provider {provider!r} (one of: {', '.join(sorted(PROVIDERS))})")
    return Route(host.strip().lower().rstrip("."), pattern, str(provider))


def parse_route(spec: str) -> Route:
    """Parse `HOST[:PATH_REGEX]=PROVIDER`, as given to --route."""
    target, eq, provider = spec.rpartition("=")
    if not eq:
        raise RouteError(f"route {spec!r}: expected HOST[:PATH_REGEX]=PROVIDER")
    host, _, path = target.partition(":")
    try:
        return make_route(host, path or None, provider)
    except RouteError as e:
        raise RouteError(f"route {spec!r}: {e}") from None


class RouteTable:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes

    def intercepts(self, host: str) -> bool:
        """Whether connections to this host are decrypted at all."""
        return any(r.matches_host(host) for r in self.routes)

    def match(self, host: str, path: str) -> Route | None:
        for r in self.routes:
            if r.matches(host, path):
                return r
        return None


def permitted_domains(hosts: Iterable[str]) -> list[str]:
    """DNS name constraints covering route host globs: `*.example.com` and
    `api-*.example.com` become `example.com` (which permits its subdomains too)."""
    out: list[str] = []
    for host in hosts:
        if "*" in host or "?" in host or "[" in host:
            tail = host.rsplit("*", 1)[-1].split("?")[-1].split("]")[-1]
            host = tail.split(".", 1)[1] if "." in tail and not tail.startswith(".") else tail.lstrip(".")
        host = host.strip(".").lower()
        if host and "." in host and host not in out:
            out.append(host)
    return out
