"""Gemini's web app (gemini.google.com, BardFrontendService/StreamGenerate).

The body is `)]}'` and then length-prefixed frames (wire/length_prefixed.py). Each frame
is a JSON array of envelopes; the model's are `["wrb.fr", null, "<JSON string>", ...]`,
and the string parses to a positional payload (docs/formats.md has the sources):

    payload[1]            [conversation id, response id, ...]
    payload[4]            candidates; candidate[0] its id (rcid),
                          candidate[1][0] the answer so far (cumulative),
                          candidate[22][0] the answer when [1][0] is a card_content URL,
                          candidate[37][0][0] the thoughts so far (cumulative),
                          candidate[8][0] == 2 once the candidate is complete
    payload[42]           the routed model's name
    envelope[5]           an error: its code at [5][2][0][1][0] (BardErrorInfo)

A payload may also arrive as a sparse object keyed by index ({"1": ..., "4": ...}).
Text and thoughts are snapshots, so deltas come from their differences, per candidate
(by its position in the list; `index` of the events):
a delta is emitted once two snapshots agree on it (the app briefly shows, then takes
back, things like a closing code fence), and the last snapshot is emitted whole when
the candidate completes or the body ends. A snapshot that changes text already emitted
cannot be taken back: a `provider.event` `rewrite` {index, kind, at, replaced, text} says from
which character it differs, how many emitted characters that replaces and the snapshot
from there to its end; deltas go on after that snapshot. The text deltas joined are then
what was emitted; with each rewrite applied, the app's last snapshot.
"""

from __future__ import annotations

import json
from typing import Any

from proxy_core.payloads import DecodeError, Payload, ProviderEvent, ReasoningDelta, TextDelta
from proxy_core.providers.base import Normalizer, ProviderError

# BardErrorInfo codes, as the public clients name them.
ERROR_CODES = {
    1013: "temporary error",
    1037: "usage limit exceeded",
    1050: "model inconsistent with the conversation",
    1052: "model header invalid",
    1060: "IP temporarily blocked",
}
CARD_CONTENT = "http://googleusercontent.com/card_content/"
RAW_LIMIT = 500


def nested(value: Any, *path: int) -> Any:
    """value[p0][p1]..., or None where a step is missing (the map is positional and moves)."""
    for step in path:
        if isinstance(value, list) and -len(value) <= step < len(value):
            value = value[step]
        elif isinstance(value, dict) and str(step) in value:
            value = value[str(step)]
        else:
            return None
    return value


def _dense(value: Any) -> Any:
    """A sparse object keyed by index ({"1": x, "4": y}) as the list it stands for."""
    if isinstance(value, dict) and value and all(isinstance(k, str) and k.isdigit() for k in value):
        out: list[Any] = [None] * (max(int(k) for k in value) + 1)
        for k, v in value.items():
            out[int(k)] = v
        return out
    return value


class _Snapshot:
    """One cumulative text of one candidate, turned into deltas."""

    def __init__(self) -> None:
        self.emitted = ""
        self.last = ""

    def update(self, text: str, final: bool) -> tuple[str, tuple[int, int, str] | None]:
        """(the delta to emit, (at, characters replaced, new text from there) if text
        already emitted changed)."""
        rewrite = None
        if not text.startswith(self.emitted):
            at = _common_prefix(text, self.emitted)
            # What was emitted stays emitted: the rewrite event carries the snapshot from
            # where it differs to its end, and deltas go on after it.
            rewrite = (at, len(self.emitted) - at, text[at:])
            self.emitted = self.last = text
            return "", rewrite
        if final:
            confirmed = text
        else:
            confirmed = text[: _common_prefix(text, self.last)] if self.last else ""
        self.last = text
        if len(confirmed) > len(self.emitted):
            delta, self.emitted = confirmed[len(self.emitted):], confirmed
            return delta, rewrite
        return "", rewrite

    def flush(self) -> str:
        if len(self.last) > len(self.emitted) and self.last.startswith(self.emitted):
            delta, self.emitted = self.last[len(self.emitted):], self.last
            return delta
        return ""


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


class GeminiWebNormalizer(Normalizer):
    name = "gemini_web"
    framing = "length_prefixed"

    def __init__(self) -> None:
        super().__init__()
        self._text: dict[int, _Snapshot] = {}
        self._thoughts: dict[int, _Snapshot] = {}
        self._done: set[int] = set()
        self._said: set[str] = set()  # frames reported once (model, conversation)

    def on_document(self, obj: Any, at_byte: int, event: str | None = None) -> list[Payload]:
        if not isinstance(obj, list):
            return [DecodeError(f"gemini_web: a frame that is not a list: {_raw(obj)}", at_byte)]
        out: list[Payload] = []
        for envelope in obj:
            if not isinstance(envelope, list) or not envelope:
                continue
            tag = envelope[0]
            if tag == "wrb.fr":
                out += self._envelope(envelope, at_byte)
            elif tag not in ("di", "af.httprm", "e"):  # bookkeeping: timings, request ids, the count of parts
                out.append(ProviderEvent("envelope", envelope))
        return out

    def close(self) -> list[Payload]:
        out: list[Payload] = []
        for index in sorted(self._thoughts):
            if text := self._thoughts[index].flush():
                out.append(ReasoningDelta(text, index))
        for index in sorted(self._text):
            if text := self._text[index].flush():
                out.append(TextDelta(text, index))
        return out

    # ---------------------------------------------------------------------------

    def _envelope(self, envelope: list[Any], at_byte: int) -> list[Payload]:
        body = nested(envelope, 2)
        if not isinstance(body, str):
            code = nested(envelope, 5, 2, 0, 1, 0)
            if isinstance(code, int):
                what = ERROR_CODES.get(code, "error")
                return [ProviderError(f"gemini_web: {what} (BardErrorInfo {code})")]
            if isinstance(nested(envelope, 5), list):
                return [ProviderEvent("status", envelope[5])]
            return []
        try:
            payload = _dense(json.loads(body))
        except ValueError as e:
            return [DecodeError(f"gemini_web: wrb.fr payload is not JSON ({e}): {_raw(body)}", at_byte)]
        if not isinstance(payload, list):
            return [DecodeError(f"gemini_web: wrb.fr payload is not a list: {_raw(body)}", at_byte)]
        out: list[Payload] = []
        ids = nested(payload, 1)
        if isinstance(ids, list) and ids and isinstance(ids[0], str) and "conversation" not in self._said:
            self._said.add("conversation")
            out.append(ProviderEvent("conversation", {
                "conversation_id": ids[0], "response_id": ids[1] if len(ids) > 1 else None}))
        model = nested(payload, 42)
        if isinstance(model, str) and "model" not in self._said:
            self._said.add("model")
            out.append(ProviderEvent("model", {"model": model}))
        candidates = _dense(nested(payload, 4))
        if isinstance(candidates, list):
            for position, candidate in enumerate(candidates):
                out += self._candidate(_dense(candidate), position)
        if isinstance(nested(payload, 25), str):  # the turn was saved: the last frame of the answer
            self.complete = True
        return out

    def _candidate(self, candidate: Any, position: int) -> list[Payload]:
        if not isinstance(candidate, list):
            return []
        index = position  # by position: a candidate's id (rcid, [0]) may be missing from early frames
        final = nested(candidate, 8, 0) == 2
        out: list[Payload] = []
        thoughts = nested(candidate, 37, 0, 0)
        if isinstance(thoughts, str):
            out += self._diff(self._thoughts, index, thoughts, final, "reasoning")
        text = nested(candidate, 1, 0)
        if isinstance(text, str) and text.startswith(CARD_CONTENT):
            alt = nested(candidate, 22, 0)
            text = alt if isinstance(alt, str) else text
        if isinstance(text, str):
            out += self._diff(self._text, index, text, final, "text")
        if final and index not in self._done:
            self._done.add(index)
            self.finish_reason = self.finish_reason or "stop"
            if index == 0:
                self.complete = True
        return out

    def _diff(self, table: dict[int, _Snapshot], index: int, text: str, final: bool, kind: str) -> list[Payload]:
        snap = table.setdefault(index, _Snapshot())
        delta, rewrite = snap.update(text, final)
        out: list[Payload] = []
        if rewrite is not None:
            at, replaced, new = rewrite
            out.append(ProviderEvent("rewrite",
                             {"index": index, "kind": kind, "at": at, "replaced": replaced, "text": new}))
        if delta:
            out.append(TextDelta(delta, index) if kind == "text" else ReasoningDelta(delta, index))
        return out


def _raw(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return json.dumps(text[:RAW_LIMIT] + ("..." if len(text) > RAW_LIMIT else ""), ensure_ascii=False)
