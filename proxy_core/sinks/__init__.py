"""Sinks: every event published to a broker beside the hub, off the proxy's path.

Events go from the hub into an on-disk spool (a thread writes it), and a task sends the
spool to the broker in order, acknowledging as the broker confirms. The proxy never
waits: when the broker is slow or down, the spool grows (bounded), and when the spool is
full, what does not fit is counted as a gap. `nats://` (JetStream) and `redis://`
(Streams) are the brokers; docs/sinks.md says what each guarantees.
"""
