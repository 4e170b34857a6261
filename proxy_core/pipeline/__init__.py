"""One response's bytes to payloads: the tap (content decoding, framing, the provider's
normalizer), coalescing of bursts, and redaction of what a stream.start tells."""
