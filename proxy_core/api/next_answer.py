"""The next answer that starts: what `/v1/streams/next` and the re-emit's `streamtap/next`
wait for. Never a WebSocket warm-up (`request.warmup`), and never a hand-off stub: a
stream of a provider that can hand its answer off (ChatGPT's web app) is the answer
once it says something, and if it hands off instead, the stream that carries the answer
on (its `request.continues`) is, on whichever host it arrives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proxy_core.api.pump import BATCH
from proxy_core.hub.hub import Hub, StreamRecord

HANDOFF_PROVIDERS = frozenset({"chatgpt_web"})
SAYS_NOTHING = frozenset({"provider.event"})  # before its answer, a hand-off stub sends only these


async def next_answer(
    hub: Hub, after: int, wants: Callable[[dict[str, Any]], bool], deadline: float,
    gone: Callable[[], bool], wait: float,
) -> StreamRecord | None:
    """The first answer wanted after ring offset `after`. By `deadline`, if none is known
    yet: a ChatGPT stream that has said nothing yet, else a hand-off whose continuation
    never came (the handed-off stream itself), else None."""
    cursor = after
    maybe_handoff: dict[str, StreamRecord] = {}  # wanted, not yet known to be the answer
    handed_off: dict[str, StreamRecord] = {}
    while not gone() and not hub.closed:
        _, batch = hub.read(cursor, BATCH)
        for env in batch:
            cursor = env.offset
            if env.type == "stream.start":
                record = hub.streams.get(env.stream)
                if record is None:
                    continue  # already forgotten: a thousand streams started since
                request = record.request
                if request.get("continues") in handed_off:
                    return record
                if request.get("warmup") or not wants(request):
                    continue
                if request.get("provider") not in HANDOFF_PROVIDERS:
                    return record
                maybe_handoff[record.id] = record
            elif env.stream in maybe_handoff and env.type not in SAYS_NOTHING:
                record = maybe_handoff.pop(env.stream)
                if not (env.terminal and record.finish_reason == "handoff"):
                    return record
                handed_off[record.id] = record
        left = deadline - hub.clock()
        if left <= 0:
            break
        await hub.wait(cursor, min(left, wait))
    return next(iter(maybe_handoff.values()), None) or next(iter(handed_off.values()), None)
