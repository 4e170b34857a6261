"""Pure, incremental decoders: `feed(bytes) -> events`, `close() -> events`, no IO."""
