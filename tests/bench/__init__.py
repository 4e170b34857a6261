"""`make bench`: the per-chunk tap path in isolation, and the proxy end to end.

tap_path.py   the decoding pipeline fed in-process (no IO)
upstream.py   the provider stand-in (its own process)
load.py       the client that drives a workload (its own process)
subscriber.py an API reader timing each event (its own process)
__main__.py   runs them all against direct, plain mitmdump and streamtap
capture_kill.py  what a SIGKILL under load costs capture.dir (not part of `make bench`)
"""

from tests.bench.tap_path import body, run_once

__all__ = ["body", "run_once"]
