"""The agent's logging: stdlib :mod:`logging`, as text or as JSON lines.

Log calls carry structured fields in ``extra`` (``event``, ``service``,
``fingerprint``, ...). The text format shows the message; the JSON format
writes one object per line with ``ts``, ``level``, ``logger``, ``msg``,
every extra field, and ``exc`` for an exception.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["JSONFormatter", "configure_logging"]

#: Attributes every LogRecord has; anything else came in through ``extra``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
#: The format of text logs.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JSONFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line of ``record`` (without the newline)."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(level: str = "info", *, json_lines: bool = False, stream: TextIO | None = None) -> None:
    """Send every log record at ``level`` or above to ``stream`` (stderr), as text or JSON lines.

    Replaces the root logger's handlers, so it can be called after
    :func:`logging.basicConfig`.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JSONFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
