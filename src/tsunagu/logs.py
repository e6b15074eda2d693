"""Structured logging: one JSON object per line, carrying the Call-ID of the call it concerns.

Why a context variable: a log line written deep in the registrar or a transaction must say
which call it belongs to without every function passing the Call-ID along. The SIP core
sets :data:`call_id_var` while it handles a message; the formatter copies it into each line.
Secrets never reach the log: callers log user names and outcomes, never passwords or
digest responses.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

call_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_id", default=None)

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


@contextmanager
def call_context(call_id: str | None) -> Iterator[None]:
    """Attach ``call_id`` to every log line written inside the block."""
    token = call_id_var.set(call_id)
    try:
        yield
    finally:
        call_id_var.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        call_id = getattr(record, "call_id", None) or call_id_var.get()
        if call_id:
            out["call_id"] = call_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key != "call_id" and not key.startswith("_"):
                out[key] = (
                    value if isinstance(value, str | int | float | bool | None) else str(value)
                )
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        call_id = getattr(record, "call_id", None) or call_id_var.get()
        extras = {
            k: v
            for k, v in record.__dict__.items()
            if k not in _RESERVED and k != "call_id" and not k.startswith("_")
        }
        tail = " ".join(f"{k}={v}" for k, v in extras.items())
        prefix = f"[{call_id}] " if call_id else ""
        line = f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {prefix}"
        line += record.getMessage() + (f" {tail}" if tail else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries' chatter (migration plugins, HTTP client internals) is not operator news.
    for noisy in ("alembic", "httpx", "httpcore", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
