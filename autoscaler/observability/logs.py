"""Logs on stderr. By default JSON lines, one object per record: what log pipelines (Loki,
Elasticsearch, Cloud Logging) parse without a custom grok; structured fields passed with `extra=`
become keys. On a terminal, `text` gives one readable line per record with those fields after it."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from enum import Enum

__all__ = ["LogFormat", "configure_logging"]


class LogFormat(Enum):
    JSON = "json"
    TEXT = "text"


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _stamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def _extra(record: logging.LogRecord) -> dict[str, object]:
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _STANDARD and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": _stamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extra(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """`time level logger: message  key=value …`; the message already says what happened, the
    fields are there to grep for."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_stamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields = " ".join(
            f"{key}={json.dumps(value, default=str, ensure_ascii=False)}"
            for key, value in _extra(record).items()
        )
        if fields:
            line += f"  {fields}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "info", log_format: LogFormat = LogFormat.JSON) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format is LogFormat.JSON else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The clients log every retry and connection at INFO; our own records say what matters.
    for noisy in ("urllib3", "kubernetes", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
