"""Structured logging: one JSON object per line, never a message body, never a huge line.

Fields often carry what a client sent (a correlation id, an address): every value
is cut at ``MAX_FIELD_CHARS`` with a marker saying how much was dropped (a
traceback at ``MAX_EXC_CHARS``), so no request can write a megabyte-long line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
MAX_FIELD_CHARS = 1000
MAX_EXC_CHARS = 20_000


def capped(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """``text``, or its first ``limit`` characters and ``…[N more chars]``."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[{len(text) - limit} more chars]"


def _field(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) <= MAX_FIELD_CHARS:
        return value
    return capped(text)


class JsonFormatter(logging.Formatter):
    """``{"ts":…, "level":…, "logger":…, "msg":…, <extra fields>}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": capped(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = _field(value)
        if record.exc_info:
            out["exc"] = capped(self.formatException(record.exc_info), MAX_EXC_CHARS)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """``--log-format text``: the message line, capped like the JSON fields."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        short = logging.makeLogRecord(vars(record))  # a copy: other handlers see the record as it was
        short.message = capped(record.message)
        return super().formatMessage(short)

    def formatException(self, ei: Any) -> str:
        return capped(super().formatException(ei), MAX_EXC_CHARS)


def setup_logging(fmt: str = "json", level: str = "INFO") -> None:
    """Configure the root logger for the service (stderr)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
