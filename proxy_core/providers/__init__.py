"""Provider normalizers, by the name routes use."""

from __future__ import annotations

from proxy_core.providers.aistudio import AIStudioNormalizer
from proxy_core.providers.anthropic import AnthropicNormalizer
from proxy_core.providers.base import Normalizer
from proxy_core.providers.gemini import GeminiNormalizer
from proxy_core.providers.generic import JSONFrames, NDJSONFrames, SSEFrames
from proxy_core.providers.openai import OpenAINormalizer

PROVIDERS: dict[str, type[Normalizer]] = {
    "openai": OpenAINormalizer,
    "anthropic": AnthropicNormalizer,
    "gemini": GeminiNormalizer,
    "aistudio": AIStudioNormalizer,
    "sse": SSEFrames,
    "ndjson": NDJSONFrames,
    "json": JSONFrames,
}


def normalizer_for(provider: str) -> Normalizer:
    return PROVIDERS[provider]()
