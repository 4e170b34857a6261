"""Tests: real processes: streamtap run, mitmdump, curl, SDKs, agents, Chromium."""
