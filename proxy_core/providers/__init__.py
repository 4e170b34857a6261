"""Provider normalizers, by the name routes use."""

from __future__ import annotations

from .anthropic import AnthropicNormalizer
from .base import Normalizer
from .gemini import GeminiNormalizer
from .generic import GenericNormalizer
from .openai import OpenAINormalizer

PROVIDERS: dict[str, type[Normalizer]] = {
    "openai": OpenAINormalizer,
    "anthropic": AnthropicNormalizer,
    "gemini": GeminiNormalizer,
    "aistudio": GenericNormalizer,
    "sse": GenericNormalizer,
    "ndjson": GenericNormalizer,
    "json": GenericNormalizer,
}

# Providers whose framing does not depend on the response's content type.
FRAMING: dict[str, str] = {"sse": "sse", "ndjson": "ndjson", "json": "json", "aistudio": "json"}


def normalizer_for(provider: str) -> Normalizer:
    return PROVIDERS[provider]()
