"""JSON logs, one object per line on stderr, each carrying the request id of its request.

What may be logged is decided by the callers, and they pass only constants and numbers: a route
name, an outcome, an error class's ``reason``, a status, byte counts, durations. Never a body, an
inner header, a key or a token. Exceptions are rendered as their type and the code locations of
the traceback, never their message, because a foreign library's message can quote input.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import secrets
import sys
import time
import traceback
from typing import Any

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
logger = logging.getLogger("gateway")

# Record attributes that are the logging module's own, not extra fields given by a caller.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


# A random per-process prefix and a counter: unique across workers and restarts, and no system
# call per request (uuid4 read os.urandom each time). Request ids appear only in our own logs.
_ID_PREFIX = secrets.token_hex(6)
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    value = f"{_ID_PREFIX}-{next(_ID_COUNTER):x}"
    request_id.set(value)
    return value


class JsonFormatter(logging.Formatter):
    """Renders a record as one JSON object; extra fields given with ``extra=`` are kept."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": request_id.get(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__
            frames = traceback.extract_tb(record.exc_info[2])
            entry["stack"] = [f"{frame.filename}:{frame.lineno}" for frame in frames]
        return json.dumps(entry, default=str)


def configure(level: str = "info") -> None:
    """Send our logs and uvicorn's through the JSON formatter on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("gateway", "uvicorn", "uvicorn.error"):
        named = logging.getLogger(name)
        named.handlers[:] = [handler] if name != "uvicorn.error" else []
        named.setLevel(level.upper())
        named.propagate = name == "uvicorn.error"
    logging.getLogger("uvicorn.access").disabled = True


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log a named event with constant fields (``exc_info=True`` adds the error's type and
    code locations)."""
    exc_info = bool(fields.pop("exc_info", False))
    logger.log(level, event, exc_info=exc_info, extra={"event": event, **fields})


def monotonic_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
