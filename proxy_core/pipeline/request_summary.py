"""What stream.start says about a request's body: the model asked for and whether a
stream was asked for, read from the JSON body after undoing its Content-Encoding (Codex
sends zstd to chatgpt.com), bounded against decompression bombs. The body itself is
never copied into an event: it can carry credentials and whole conversations.

Pure: the proxy forwards the original bytes whatever happens here, and nothing raises.
"""

from __future__ import annotations

import json
import re
from typing import Any

from proxy_core.wire.content import ContentDecodingError, decode_bounded

REQUEST_BODY_LIMIT = 8 << 20  # decoded bytes read at most for the summary (parsed on the proxy loop)
# Gemini names the model in the path: /v1beta/models/gemini-2.5-flash:generateContent
_MODEL_IN_PATH = re.compile(r"/models/([^/:?]+):")


def request_summary(body: bytes | None, content_encoding: str | None, path: str = "",
                    limit: int = REQUEST_BODY_LIMIT) -> dict[str, Any]:
    """{model, stream} as far as they are known (null when not), `conversation_id` when
    the body names one, and when the body could not be read, `body_error` saying why."""
    out: dict[str, Any] = {"model": None, "stream": None}
    if (found := _MODEL_IN_PATH.search(path)) is not None:
        out["model"] = found.group(1)
    if "streamGenerateContent" in path:
        out["stream"] = True
    elif ":generateContent" in path:
        out["stream"] = False
    if not body:
        return out
    try:
        text = decode_bounded(body, content_encoding, limit)
    except ContentDecodingError as e:
        out["body_error"] = str(e)
        return out
    except Exception as e:  # a decoder bug must never reach the proxy
        out["body_error"] = f"internal decoder error: {e!r}"
        return out
    if not text.lstrip()[:1] == b"{":
        return out
    try:
        obj = json.loads(text)
    except ValueError:
        return out
    if isinstance(obj, dict):
        model = obj.get("model")
        if isinstance(model, str) and model:
            out["model"] = model.removeprefix("models/")
        stream = obj.get("stream")
        if isinstance(stream, bool):
            out["stream"] = stream
        conversation = obj.get("conversation_id")  # ChatGPT's web app: links a resume to its turn
        if isinstance(conversation, str) and conversation:
            out["conversation_id"] = conversation
    return out
