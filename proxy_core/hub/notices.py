"""The notices a reader gets besides stream events: a gap (events it asked for are no
longer buffered), a cut-off (it fell too far behind) and a restart (its offset is from
an earlier run). Each is shaped like an event (offset, stream and seq null, type, time)
so that one parser reads everything; docs/api.md describes them."""

from __future__ import annotations

from typing import Any


def gap_event(first_lost: int, last_lost: int, time: float) -> dict[str, Any]:
    """The notice a subscriber gets when offsets it asked for are no longer buffered.

    Its offset is the last one lost, so resuming from it continues without a hole.
    """
    return {
        "offset": last_lost,
        "stream": None,
        "seq": None,
        "type": "gap",
        "time": time,
        "from": first_lost,
        "to": last_lost,
    }


def cutoff_event(resume_from: int, lag: int, time: float) -> dict[str, Any]:
    """The last thing a reader that fell too far behind receives before being cut off.

    Its offset is the last one delivered: resuming from it (since= or Last-Event-ID)
    continues exactly where the reader stopped.
    """
    return {
        "offset": resume_from,
        "stream": None,
        "seq": None,
        "type": "cutoff",
        "time": time,
        "resume_from": resume_from,
        "lag": lag,
        "message": f"reader fell {lag} events behind; reconnect with since={resume_from}",
    }


def restart_event(last_offset_seen: int, instance: str, time: float,
                  previous_instance: str | None = None) -> dict[str, Any]:
    """For a reader whose offset is from an earlier run (the server sees an offset it never
    gave out; the client sees another instance id). This run's events follow from its start."""
    return {
        "offset": 0,
        "stream": None,
        "seq": None,
        "type": "restart",
        "time": time,
        "instance": instance,
        "previous_instance": previous_instance,
        "last_offset_seen": last_offset_seen,
        "message": f"streamtap restarted: offset {last_offset_seen} is from an earlier run; "
        "this run's events follow from its start",
    }
