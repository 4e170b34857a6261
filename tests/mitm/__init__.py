"""Tests: the addons under mitmproxy's test helpers, flow files, replay, captures."""
