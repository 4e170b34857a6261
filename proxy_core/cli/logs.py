"""`--log-format json`: one JSON object per log line, for log collectors."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime


class JsonLogHandler(logging.Handler):
    def __init__(self, stream=None) -> None:
        super().__init__()
        self.stream = stream or sys.stdout

    def emit(self, record: logging.LogRecord) -> None:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        client = getattr(record, "client", None)
        if client:
            entry["client"] = f"{client[0]}:{client[1]}" if isinstance(client, tuple) else str(client)
        if record.exc_info:
            entry["exception"] = logging.Formatter().formatException(record.exc_info)
        try:
            self.stream.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self.stream.flush()
        except OSError:
            pass
