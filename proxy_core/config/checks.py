"""The checks on single settings, shared by the configuration file and the mitmproxy
options of the addons: one rule, one wording, whichever way a value comes in. Each
raises ConfigError naming the key it was given."""

from __future__ import annotations

from typing import Any

from proxy_core.config import defaults
from proxy_core.config.addresses import is_loopback

MIN_EVENT_BYTES = 1024


class ConfigError(ValueError):
    pass


def at_least(key: str, value: Any, low: int) -> Any:
    if value < low:
        raise ConfigError(f"{key}: must be {'0 or more' if low == 0 else f'at least {low}'}")
    return value


def positive(key: str, value: Any) -> Any:
    if not value > 0:
        raise ConfigError(f"{key}: must be greater than 0, not {value!r}")
    return value


def seconds(key: str, value: Any, high: float | None = None, *, zero: bool = False) -> float:
    """A number of seconds (a string, as mitmproxy options have no float type)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected a number of seconds, not {value!r}") from None
    if number < 0 or (number == 0 and not zero) or (high is not None and number > high):
        if high is not None:
            raise ConfigError(f"{key}: must be between 0 and {high} seconds")
        raise ConfigError(f"{key}: must be a number of seconds greater than 0")
    return number


def decode_window(key: str, value: Any) -> float:
    return seconds(key, value, defaults.MAX_DECODE_WINDOW, zero=True)


def decoder_process(key: str, value: Any) -> str:
    if isinstance(value, bool):  # YAML's bare on/off
        value = "on" if value else "off"
    if value not in defaults.DECODER_PROCESS_MODES:
        raise ConfigError(f"{key}: must be one of {', '.join(defaults.DECODER_PROCESS_MODES)}, not {value!r}")
    return str(value)


def max_event_bytes(key: str, value: Any) -> int:
    return int(at_least(key, value, MIN_EVENT_BYTES))


def beyond_loopback(key: str, host: str, guard: str | None, guard_key: str) -> None:
    """Listening on `host` needs `guard` (proxy auth, an API token) unless it is loopback."""
    if not is_loopback(host) and not guard:
        raise ConfigError(f"{key}: {host} is not loopback; set {guard_key} to listen there")
