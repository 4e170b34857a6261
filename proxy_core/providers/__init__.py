"""Provider normalizers, by the name routes use."""

from __future__ import annotations

from proxy_core.providers.aistudio import AIStudioNormalizer
from proxy_core.providers.anthropic import AnthropicNormalizer
from proxy_core.providers.base import Normalizer
from proxy_core.providers.chatgpt_web import ChatGPTWebNormalizer
from proxy_core.providers.claude_web import ClaudeWebNormalizer
from proxy_core.providers.gemini import CodeAssistNormalizer, GeminiNormalizer
from proxy_core.providers.gemini_web import GeminiWebNormalizer
from proxy_core.providers.generic import JSONFrames, NDJSONFrames, SSEFrames, WebSocketFrames
from proxy_core.providers.openai import OpenAINormalizer
from proxy_core.providers.openai_realtime import RealtimeNormalizer

PROVIDERS: dict[str, type[Normalizer]] = {
    "openai": OpenAINormalizer,
    "openai-realtime": RealtimeNormalizer,  # WebSocket only in practice (pipeline/websocket.py)
    "anthropic": AnthropicNormalizer,
    "gemini": GeminiNormalizer,
    "codeassist": CodeAssistNormalizer,  # Gemini CLI's Code Assist backend: Gemini wrapped in `response`
    "aistudio": AIStudioNormalizer,
    # The browser chat apps (docs/formats.md)
    "chatgpt_web": ChatGPTWebNormalizer,
    "claude_web": ClaudeWebNormalizer,
    "gemini_web": GeminiWebNormalizer,
    "sse": SSEFrames,
    "ndjson": NDJSONFrames,
    "json": JSONFrames,
    "ws-json": WebSocketFrames,  # each WebSocket text message one frame
}


def normalizer_for(provider: str) -> Normalizer:
    return PROVIDERS[provider]()
