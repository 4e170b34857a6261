"""Which stream handed its answer off to which other: the continuation's stream.start says
`request.continues` = the stream whose hand-off it carries on, and the handed-off
stream's summary lists `continued_by`. Today only ChatGPT hands off
(providers/chatgpt_topics.py says how its streams name each other)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from proxy_core.providers.chatgpt_topics import HANDOFF, continuation_keys, handoff_keys

MAX_OFFERS = 1024  # keys remembered, oldest forgotten first


class Handoffs:
    def __init__(self, limit: int = MAX_OFFERS) -> None:
        self.limit = limit
        self._offers: OrderedDict[str, str] = OrderedDict()  # link key -> handed-off stream id

    def offered(self, stream_id: str, provider_type: str, data: Any) -> None:
        """A provider.event of a stream: a hand-off offers its keys."""
        if provider_type != HANDOFF:
            return
        for key in handoff_keys(data):
            self._offers[key] = stream_id
            self._offers.move_to_end(key)
        while len(self._offers) > self.limit:
            self._offers.popitem(last=False)

    def claim(self, request: dict[str, Any]) -> str | None:
        """The stream a new one continues, if its request asks for a key on offer. Its
        conversation key is then taken: a later resume of another turn of the same
        conversation continues nothing. Topic keys stay (a re-subscribe on a new
        connection carries the same answer on)."""
        for key in continuation_keys(request):
            stream_id = self._offers.get(key)
            if stream_id is not None:
                for other in [k for k, v in self._offers.items() if v == stream_id and k.startswith("conversation:")]:
                    del self._offers[other]
                return stream_id
        return None
