"""ChatGPT's web app (chatgpt.com /backend-api/f/conversation and kin), over SSE.

Two encodings, both built from public sources (docs/formats.md names them):

- "v1" delta encoding (`event: delta_encoding`, `data: "v1"` first): `delta` records
  `{"p": path, "o": op, "v": value, "c": n}` edit a message document. An omitted `p` or
  `o` is the previous record's (across other events too); `{"v": {"message": ...}}`
  opens a new document and forgets them. Ops: add, replace, append (strings
  concatenate, lists extend, objects merge), remove, truncate and patch (a batch whose
  paths are relative to its own). A bare string `v` with no path known appends to the
  answer (a resumed stream can start mid-message).
- The older cumulative form: `{"message": {...}, "conversation_id": ..., "error": null}`,
  each repeating the message so far.

Either way the document is kept, and text is what the current message's text grows by
(an append to /message/content/parts/0 is emitted as it is, without a diff). Text comes
only from the visible answer: author assistant, recipient all, content type text (or
multimodal_text), channel final or none, not hidden. User echoes, system, tool and
context messages give none. Thoughts (`content.thoughts[N].content`) are reasoning; their
summaries are `provider.event`s `thought_summary` {index, text}. Text already emitted
that a later document changes gives a `provider.event` `rewrite` {message_id, at,
replaced, text}: the text from where it differs to its end; deltas go on after it.

Top-level records with a `type` become `provider.event`s of that type, with
tokens and account fields left out (`resume_conversation_token` keeps only its
conversation id and kind). `stream_handoff` (the answer is delivered by another stream:
the resume endpoint or a WebSocket topic) ends this stream with finish_reason
"handoff". `message_stream_complete` and `[DONE]` mark the end; a non-null `error`
ends the stream with stream.error.
"""

from __future__ import annotations

import json
from typing import Any

from proxy_core.payloads import DecodeError, Payload, ProviderEvent, ReasoningDelta, TextDelta
from proxy_core.providers.base import Normalizer, ProviderError, parse_json
from proxy_core.wire.sse import ServerSentEvent

TEXT_PATH = "/message/content/parts/0"
RAW_LIMIT = 500
_SECRET_WORDS = ("token", "account", "email", "user_id", "cookie", "authorization", "session")
_MISSING = object()


def scrub(value: Any, depth: int = 0) -> Any:
    """`value` without the members whose names say they hold secrets or account ids."""
    if depth > 20:
        return None
    if isinstance(value, dict):
        return {k: scrub(v, depth + 1) for k, v in value.items()
                if not any(w in str(k).lower() for w in _SECRET_WORDS)}
    if isinstance(value, list):
        return [scrub(v, depth + 1) for v in value]
    return value


def _tokens(path: str) -> list[str]:
    if not path:
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in path.lstrip("/").split("/")]


class PatchError(ValueError):
    pass


def _step(node: Any, token: str, create: bool) -> Any:
    if isinstance(node, dict):
        if token not in node:
            if not create:
                raise PatchError(f"no member {token!r}")
            node[token] = {}
        return node[token]
    if isinstance(node, list):
        i = len(node) if token == "-" else int(token) if token.isdigit() else -1
        if i == len(node) and create:
            node.append({})
        if not 0 <= i < len(node):
            raise PatchError(f"no item {token!r}")
        return node[i]
    raise PatchError(f"cannot go into a {type(node).__name__} at {token!r}")


def apply_op(doc: dict[str, Any], path: str, op: str, value: Any) -> dict[str, Any]:
    """`op` on `doc` at `path` (a JSON pointer); returns the document (a new one when
    the root itself is replaced)."""
    tokens = _tokens(path)
    if not tokens:
        if op in ("add", "replace"):
            return value if isinstance(value, dict) else {"value": value}
        if op == "append" and isinstance(value, dict):
            doc.update(value)
            return doc
        raise PatchError(f"cannot {op} the document itself")
    parent: Any = doc
    for token in tokens[:-1]:
        parent = _step(parent, token, create=op in ("add", "append", "replace"))
    key = tokens[-1]
    if isinstance(parent, list):
        i = len(parent) if key == "-" else int(key) if key.isdigit() else -1
        if not 0 <= i <= len(parent):
            raise PatchError(f"no item {key!r}")
        current = parent[i] if i < len(parent) else _MISSING
    elif isinstance(parent, dict):
        current = parent.get(key, _MISSING)
    else:
        raise PatchError(f"cannot edit inside a {type(parent).__name__}")
    if op == "append":
        if current is _MISSING or current is None:
            new = value
        elif isinstance(current, str) and isinstance(value, str):
            new = current + value
        elif isinstance(current, list):
            new = current + value if isinstance(value, list) else [*current, value]
        elif isinstance(current, dict) and isinstance(value, dict):
            new = {**current, **value}
        else:
            raise PatchError(f"cannot append a {type(value).__name__} to a {type(current).__name__}")
    elif op in ("add", "replace"):
        new = value
    elif op == "truncate":
        if not isinstance(value, int) or not isinstance(current, (str, list)):
            raise PatchError("truncate needs a length and a string or list")
        new = current[:value]
    elif op == "remove":
        if current is not _MISSING:
            if isinstance(parent, list):
                del parent[i]
            else:
                del parent[key]
        return doc
    else:
        raise PatchError(f"unknown op {op!r}")
    if isinstance(parent, list):
        if i == len(parent):
            parent.append(new)
        elif op == "add" and path.endswith("/-"):
            parent.insert(i, new)
        else:
            parent[i] = new
    else:
        parent[key] = new
    return doc


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _message(doc: dict[str, Any] | None) -> dict[str, Any]:
    msg = doc.get("message") if isinstance(doc, dict) else None
    return msg if isinstance(msg, dict) else {}


def visible(msg: dict[str, Any]) -> bool:
    author = _obj(msg.get("author"))
    content = _obj(msg.get("content"))
    metadata = _obj(msg.get("metadata"))
    return (
        author.get("role") == "assistant"
        and msg.get("recipient") in ("all", None)
        and content.get("content_type") in ("text", "multimodal_text")
        and msg.get("channel") in (None, "final")
        and not metadata.get("is_visually_hidden_from_conversation")
    )


def message_text(msg: dict[str, Any]) -> str:
    content = _obj(msg.get("content"))
    parts = content.get("parts")
    if not isinstance(parts, list):
        return ""
    return "".join(p for p in parts if isinstance(p, str))


class ChatGPTWebNormalizer(Normalizer):
    name = "chatgpt_web"
    framing = None  # SSE as sent; a JSON body (an error, a legacy answer) by its content type

    def __init__(self) -> None:
        super().__init__()
        self.encoding: str | None = None
        self.handoff = False
        self._docs: dict[Any, dict[str, Any]] = {}
        self._c: Any = None  # the current document's key
        self._p: str | None = None  # inherited path and op
        self._o: str | None = None
        self._child: tuple[str, str] | None = None  # the last op inside a patch
        self._emitted: dict[str, str] = {}  # per message: the text emitted
        self._thoughts: dict[tuple[str, int, str], str] = {}  # (message, N, content|summary)
        self._anon = 0

    # ---------------------------------------------------------------------------

    def on_event(self, ev: ServerSentEvent) -> list[Payload]:
        data = ev.data.strip()
        if data == "[DONE]":
            self.complete = True
            return self._flush_finish()
        if not data:
            return []
        try:
            obj = parse_json(data)
        except ValueError as e:
            return [DecodeError(f"chatgpt_web: {ev.event} event data is not JSON ({e}): {_raw(data)}", ev.at_byte)]
        return self.on_document(obj, ev.at_byte, ev.event)

    def on_document(self, obj: Any, at_byte: int, event: str | None = None) -> list[Payload]:
        if isinstance(obj, str):
            if event == "delta_encoding":
                self.encoding = obj
                return []
            return [ProviderEvent(event or "message", obj)]
        if not isinstance(obj, dict):
            return [DecodeError(f"chatgpt_web: unexpected {type(obj).__name__}: {_raw(obj)}", at_byte)]
        err = obj.get("error")
        if err:
            return [ProviderError(_error_text(err))]
        if "type" in obj and not ({"p", "o", "v"} & obj.keys()):
            return self._typed(obj)
        if "message" in obj and "v" not in obj:  # the cumulative form: a whole document
            return self._set_document(obj.get("c", self._c), obj)
        if "v" not in obj and "p" not in obj:
            return [ProviderEvent(event or "message", scrub(obj))]
        try:
            return self._record(obj)
        except (PatchError, TypeError, ValueError) as e:
            return [DecodeError(f"chatgpt_web: cannot apply delta ({e}): {_raw(obj)}", at_byte)]

    def close(self) -> list[Payload]:
        return self._flush_finish()

    # ---------------------------------------------------------------------------

    def _record(self, obj: dict[str, Any]) -> list[Payload]:
        value = obj.get("v")
        if "p" not in obj and "o" not in obj and isinstance(value, dict) and "message" in value:
            self._p = self._o = None  # a new message: nothing is inherited
            self._child = None
            return self._set_document(obj.get("c", self._c), value)
        if isinstance(value, dict) and value.get("error"):
            return [ProviderError(_error_text(value["error"]))]
        if "c" in obj:
            self._c = obj["c"]
        if obj.get("p") == "" and obj.get("o") in ("add", "replace") and isinstance(value, dict):
            self._p = self._o = None  # a new document: nothing is inherited
            self._child = None
            return self._set_document(self._c, value)
        path = obj.get("p", self._p)
        op = obj.get("o", self._o)
        if op == "patch" and "o" not in obj and not isinstance(value, list) and self._child is not None:
            path, op = self._child  # a bare value after a batch continues the batch's last op
        if path is None and isinstance(value, str):
            path = TEXT_PATH  # nothing to inherit (a resumed stream): the answer goes on
        if op is None and isinstance(value, str):
            op = "append"
        if not isinstance(path, str) or not isinstance(op, str):
            raise PatchError("no path or op to apply")
        self._p, self._o = path, op
        return self._apply(path, op, value)

    def _apply(self, path: str, op: str, value: Any) -> list[Payload]:
        if op == "patch":
            if not isinstance(value, list):
                raise PatchError("patch without a list of operations")
            out: list[Payload] = []
            child_op = None
            for child in value:
                if not isinstance(child, dict):
                    raise PatchError("patch item is not an object")
                child_path = path.rstrip("/") + child.get("p", "") if child.get("p") else path
                child_op = child.get("o", child_op)
                if not isinstance(child_op, str):
                    raise PatchError("patch item without an op")
                self._child = (child_path, child_op)
                out += self._apply(child_path, child_op, child.get("v"))
            return out
        if path == "" and op in ("add", "replace") and isinstance(value, dict):
            return self._set_document(self._c, value)
        doc = self._docs.get(self._c)
        if doc is None:
            doc = self._docs[self._c] = self._placeholder()
        msg = _message(doc)
        if path == TEXT_PATH and op == "append" and isinstance(value, str):
            content = msg.get("content")
            parts = content.get("parts") if isinstance(content, dict) else None
            if isinstance(parts, list) and len(parts) == 1 and isinstance(parts[0], str):
                # The hot path: the answer grows by `value`, no diff needed.
                key = self._key(msg)
                done = self._emitted.get(key, "")
                in_step = len(done) == len(parts[0])
                parts[0] += value
                if in_step and visible(msg):
                    self._emitted[key] = done + value
                    return [TextDelta(value, 0)] if value else []
                return self._emit(msg)
        new = apply_op(doc, path, op, value)
        if new is not doc:
            return self._set_document(self._c, new)
        if path in ("/message", "/message/content") or path.startswith(("/message/content/", "/message/channel",
                                                                          "/message/recipient", "/message/author")):
            return self._emit(_message(doc))
        return []

    def _placeholder(self) -> dict[str, Any]:
        """The document of a stream that starts mid-message (a resume): the answer."""
        self._anon += 1
        return {"message": {"id": f"#resumed-{self._anon}", "author": {"role": "assistant"}, "recipient": "all",
                            "content": {"content_type": "text", "parts": [""]}}}

    def _set_document(self, c: Any, doc: dict[str, Any]) -> list[Payload]:
        self._c = c
        self._docs[c] = doc
        return self._emit(_message(doc))

    def _key(self, msg: dict[str, Any]) -> str:
        mid = msg.get("id")
        return mid if isinstance(mid, str) else f"#doc-{self._c}"

    def _emit(self, msg: dict[str, Any]) -> list[Payload]:
        out: list[Payload] = []
        if not msg:
            return out
        key = self._key(msg)
        content = _obj(msg.get("content"))
        thoughts = content.get("thoughts")
        if isinstance(thoughts, list):
            for n, thought in enumerate(thoughts):
                if isinstance(thought, dict):
                    out += self._thought(key, n, thought)
        if visible(msg):
            text = message_text(msg)
            done = self._emitted.get(key, "")
            if text.startswith(done):
                if len(text) > len(done):
                    out.append(TextDelta(text[len(done):], 0))
                    self._emitted[key] = text
            else:
                at = _common_prefix(text, done)
                out.append(ProviderEvent("rewrite", {"message_id": key, "at": at, "replaced": len(done) - at,
                                                     "text": text[at:]}))
                self._emitted[key] = text
            self._finish(msg)
        return out

    def _thought(self, key: str, n: int, thought: dict[str, Any]) -> list[Payload]:
        out: list[Payload] = []
        content = thought.get("content")
        if not isinstance(content, str) or not content:
            chunks = thought.get("chunks")
            content = "".join(c for c in chunks if isinstance(c, str)) if isinstance(chunks, list) else ""
        summary = thought.get("summary")
        texts = (("content", content), ("summary", summary if isinstance(summary, str) else ""))
        for kind, text in texts:
            done = self._thoughts.get((key, n, kind), "")
            if len(text) > len(done) and text.startswith(done):
                delta = text[len(done):]
                self._thoughts[(key, n, kind)] = text
                if kind == "content":
                    out.append(ReasoningDelta(delta, 0))
                else:
                    out.append(ProviderEvent("thought_summary", {"index": n, "text": delta}))
        return out

    def _finish(self, msg: dict[str, Any]) -> None:
        if msg.get("status") != "finished_successfully" and not msg.get("end_turn"):
            return
        metadata = _obj(msg.get("metadata"))
        details = _obj(metadata.get("finish_details"))
        reason = details.get("type")
        if isinstance(reason, str):
            self.finish_reason = reason
        elif msg.get("end_turn") and self.finish_reason is None:
            self.finish_reason = "stop"

    def _flush_finish(self) -> list[Payload]:
        # Metadata patched after the last text still says how the answer ended.
        doc = self._docs.get(self._c)
        if doc is not None and visible(_message(doc)):
            self._finish(_message(doc))
        return []

    def _typed(self, obj: dict[str, Any]) -> list[Payload]:
        kind = str(obj.get("type"))
        if kind == "error":
            return [ProviderError(_error_text(obj.get("message") or obj))]
        if kind == "message_stream_complete":
            self.complete = True
        elif kind == "stream_handoff":
            self.handoff = True
            self.finish_reason = "handoff"
        elif kind == "resume_conversation_token":
            return [ProviderEvent("resume_conversation_token",
                          {"conversation_id": obj.get("conversation_id"), "kind": obj.get("kind")})]
        elif kind == "input_message":  # the user's message echoed: only what links the turn
            meta = _obj(_message(obj).get("metadata"))
            return [ProviderEvent("input_message", {
                "conversation_id": obj.get("conversation_id"),
                "message_id": _message(obj).get("id"),
                "working_turn_id": meta.get("working_turn_id"),
                "turn_exchange_id": meta.get("turn_exchange_id"),
            })]
        data = {k: v for k, v in scrub(obj).items() if k != "type"}
        return [ProviderEvent(kind, data)]


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _error_text(err: Any) -> str:
    if isinstance(err, dict):
        msg = err.get("message") or err.get("detail") or err.get("code")
        return f"chatgpt_web: {msg}" if msg else f"chatgpt_web: {json.dumps(err)[:RAW_LIMIT]}"
    return f"chatgpt_web: {err}"


def _raw(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return json.dumps(text[:RAW_LIMIT] + ("..." if len(text) > RAW_LIMIT else ""), ensure_ascii=False)
