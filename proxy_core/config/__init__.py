"""Settings, routes, listen and connect-to specs, the PAC file and the API token file:
one source of truth for streamtap's defaults and checks. Imports neither mitmproxy nor
tornado, so the commands that only read it start fast."""
