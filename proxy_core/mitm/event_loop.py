"""The event loop `streamtap run` uses: uvloop when installed, else asyncio's own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A uvloop loop that accepts mitmproxy's eager task factory. uvloop passes the
    factory an `eager_start` argument that asyncio's own eager factory does not take
    (Python 3.12 and 3.13); the shim drops it, the tasks start eagerly all the same."""
    try:
        import uvloop
    except ImportError:
        return None

    class Loop(uvloop.Loop):
        def set_task_factory(self, factory):
            if factory is not None:
                inner = factory

                def factory(loop, coro, **kwargs):
                    kwargs.pop("eager_start", None)
                    return inner(loop, coro, **kwargs)

            super().set_task_factory(factory)

    return Loop
