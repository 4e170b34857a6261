"""streamtap: a TLS-intercepting proxy that decodes streamed AI answers into live events."""

__version__ = "0.1.0"
