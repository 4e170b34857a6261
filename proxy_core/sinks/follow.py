"""Following a whole fleet: the events every streamtap published to NATS JetStream,
live, each with the `instance` that sent it (`streamtap tail --from nats://...`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from proxy_core.sinks.nats import NatsBroker


async def follow_nats(url: str, everything: bool) -> AsyncIterator[dict[str, Any]]:
    """Every event on the sink's JetStream stream from now on (or from its start), in
    the order JetStream stored them; per stream, in seq order."""
    try:
        import nats
        from nats.js.api import DeliverPolicy
    except ImportError:
        raise RuntimeError("following NATS needs nats-py (pip install 'streamtap[sinks]')") from None
    where = NatsBroker(url)
    nc = await nats.connect(where.server, connect_timeout=5)
    try:
        js = nc.jetstream()
        policy = DeliverPolicy.ALL if everything else DeliverPolicy.NEW
        sub = await js.subscribe(f"{where.prefix}.>", stream=where.stream_name, ordered_consumer=True,
                                 deliver_policy=policy)
        async for msg in sub.messages:
            event = json.loads(msg.data)
            yield {"instance": (msg.headers or {}).get("Streamtap-Instance"), **event}
    finally:
        await nc.close()
