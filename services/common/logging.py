"""One structured logger for every service: JSON lines (or plain text) on stderr.

Extra fields passed with ``logger.info("...", extra={"station": 1})`` become JSON keys. Known secret
values are replaced by ``***`` in every record, whatever a library puts in its message.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """One readable line per record; the extra fields follow as ``key=value``.

    Without them a text log would drop what the message refers to (station, file, error).
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = [
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _RESERVED and not key.startswith("_")
        ]
        if not extras:
            return text
        head, newline, rest = text.partition("\n")  # the traceback stays below the line
        return f"{head} {' '.join(extras)}{newline}{rest}"


class RedactSecrets(logging.Filter):
    """Replace secret values in the formatted message and arguments of every record."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            for secret in self._secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


class RedactingFormatter(logging.Formatter):
    """Wraps a formatter and replaces secret values in its output.

    The filter above only sees the message; a secret can also arrive in an extra field
    (``extra={"error": str(exc)}``) or a traceback, so the finished line is redacted as well, in
    plain and in JSON-escaped form.
    """

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.inner = inner
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Redact these values too."""
        for secret in secrets:
            if secret:
                self.secrets += [secret, json.dumps(secret)[1:-1]]

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def configure_logging(level: str = "INFO", fmt: str = "json", secrets: Iterable[str] = ()) -> None:
    """Install the root handler on stderr (idempotent)."""
    secrets = list(secrets)
    handler = logging.StreamHandler(sys.stderr)
    inner = JsonFormatter() if fmt == "json" else TextFormatter()
    handler.setFormatter(RedactingFormatter(inner, secrets))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # paramiko logs every channel event at INFO; keep it to warnings.
    logging.getLogger("paramiko").setLevel(logging.WARNING)


def redact_secrets(secrets: Iterable[str]) -> None:
    """Add secret values to the installed handlers (a command learns them after logging is set)."""
    secrets = [s for s in secrets if s]
    handlers = [
        h for h in logging.getLogger().handlers if isinstance(h.formatter, RedactingFormatter)
    ]
    if not handlers:
        configure_logging(secrets=secrets)
        return
    for handler in handlers:
        assert isinstance(handler.formatter, RedactingFormatter)
        handler.formatter.add(secrets)
        handler.addFilter(RedactSecrets(secrets))
