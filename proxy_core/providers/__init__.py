"""Provider normalizers, by the name routes use."""

from __future__ import annotations

from .aistudio import AIStudioNormalizer
from .anthropic import AnthropicNormalizer
from .base import Normalizer
from .gemini import GeminiNormalizer
from .generic import JSONFrames, NDJSONFrames, SSEFrames
from .openai import OpenAINormalizer

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
