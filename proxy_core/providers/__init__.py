"""Provider normalizers, by the name routes use."""

from __future__ import annotations

from .base import Normalizer
from .generic import GenericNormalizer
from .openai import OpenAINormalizer

PROVIDERS: dict[str, type[Normalizer]] = {
    "openai": OpenAINormalizer,
    "anthropic": GenericNormalizer,
    "gemini": GenericNormalizer,
    "aistudio": GenericNormalizer,
    "sse": GenericNormalizer,
    "ndjson": GenericNormalizer,
    "json": GenericNormalizer,
}


def normalizer_for(provider: str) -> Normalizer:
    return PROVIDERS[provider]()
