"""Parser of the slow-control logs of a station (DOMAIN.md §4, layouts in ``schemas.station_logs``).

A log line is a timestamp ``YYYY-MM-DDThh:mm:ss`` (or with a space instead of ``T``), optionally
followed by ``;``, then whitespace-separated values. Rules, in order:

* blank lines and lines starting with ``#`` are skipped (not counted);
* control characters (NUL and the like, tab excepted) -> ``BINARY_CONTENT``;
* the line must start with a real UTC time of the years 2000-2099 (a station PC that lost its clock
  writes 1970 or 2000-01-01 dates: the year range catches the former) -> else ``BAD_TIMESTAMP``;
* at least ``log_type.min_values`` values after the timestamp -> else ``FIELD_COUNT``;
* each named column must be a decimal number or ``nan`` (any case, optional sign; becomes None)
  -> else ``MALFORMED_NUMBER``; unused columns are only counted;
* a named value outside its sanity limits is kept and its name listed in ``out_of_range``.

Logs grow while the station writes them: a last line without ``\\n`` is neither parsed nor
rejected, and ``consumed_bytes`` stops before it, so that the next read starts there (with
``first_line`` keeping line numbers right). Logs are small; this parser is plain Python.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.station_logs import LogType
from services.common.rejects import (
    BAD_TIMESTAMP,
    BINARY_CONTENT,
    FIELD_COUNT,
    MALFORMED_NUMBER,
    LineReject,
    make_reject,
)

__all__ = ["LogParseResult", "LogRow", "parse_log"]

_TIMESTAMP = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2}):([0-9]{2})")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NAN = re.compile(r"[+-]?nan", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_YEARS = (2000, 2099)


@dataclass(frozen=True)
class LogRow:
    """One valid log line.

    Attributes
    ----------
    line : int
        1-based line number in the file.
    time : datetime
        Timestamp of the line, UTC aware.
    values : dict of str to float or None
        The named columns of the log type, in its column order; ``nan`` gives None.
    out_of_range : tuple of str
        Names of values outside the log type's sanity limits (the values are kept).
    """

    line: int
    time: datetime
    values: dict[str, float | None]
    out_of_range: tuple[str, ...]


@dataclass(frozen=True)
class LogParseResult:
    """Rows and problems of a piece of a log file.

    Attributes
    ----------
    rows : tuple of LogRow
        Valid lines, in file order.
    rejects : tuple of LineReject
        One per invalid line.
    lines_total : int
        Complete, non-blank, non-comment lines seen.
    consumed_bytes : int
        Bytes up to and including the last newline; a trailing partial line is left for later.
    """

    rows: tuple[LogRow, ...]
    rejects: tuple[LineReject, ...]
    lines_total: int
    consumed_bytes: int


def _parse_time(text: str) -> tuple[datetime, str] | str:
    """Time and the rest of the line, or the detail of a bad timestamp."""
    match = _TIMESTAMP.match(text)
    if match is None:
        head = text.split(maxsplit=1)[0] if text.split() else text
        return f"{head[:40]!r} is not a timestamp YYYY-MM-DDThh:mm:ss"
    stamp = match.group(0)
    rest = text[match.end() :]
    if rest.startswith(";"):
        rest = rest[1:]
    elif rest and not rest[0].isspace():
        return f"timestamp {stamp!r} is followed by {rest[0]!r}, expected ';' or a blank"
    year, month, day, hour, minute, second = (int(g) for g in match.groups())
    try:
        when = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return f"{stamp!r} is not a real time"
    if not _YEARS[0] <= year <= _YEARS[1]:
        return f"year {year} of {stamp!r} is outside {_YEARS[0]}-{_YEARS[1]} (clock not set?)"
    return when, rest


def _parse_line(text: str, number: int, log_type: LogType) -> LogRow | tuple[str, str]:
    """The row of a line, or (reason, detail)."""
    control = _CONTROL.search(text)
    if control is not None:
        byte = ord(control.group(0))
        return BINARY_CONTENT, f"control byte 0x{byte:02x} at column {control.start() + 1}"
    parsed = _parse_time(text.lstrip(" \t"))
    if isinstance(parsed, str):
        return BAD_TIMESTAMP, parsed
    when, rest = parsed
    tokens = rest.split()
    if len(tokens) < log_type.min_values:
        return FIELD_COUNT, (
            f"{len(tokens)} values after the timestamp, expected at least {log_type.min_values}"
        )
    values: dict[str, float | None] = {}
    out_of_range: list[str] = []
    for column in log_type.columns:
        token = tokens[column.position]
        if _NAN.fullmatch(token):
            values[column.name] = None
            continue
        if _NUMBER.fullmatch(token) is None:
            return MALFORMED_NUMBER, (
                f"{column.name} (value {column.position + 1}) {token!r} is not a number"
            )
        value = float(token)
        if math.isinf(value):  # e.g. 1e999: a number in form, not a measurement
            return MALFORMED_NUMBER, f"{column.name} {token!r} is not a finite number"
        values[column.name] = value
        if (column.low is not None and value < column.low) or (
            column.high is not None and value > column.high
        ):
            out_of_range.append(column.name)
    return LogRow(number, when, values, tuple(out_of_range))


def parse_log(data: bytes, log_type: LogType, *, first_line: int = 1) -> LogParseResult:
    """Parse the complete lines of (a piece of) a slow-control log.

    Parameters
    ----------
    data : bytes
        File content, or the bytes appended since the last read.
    log_type : LogType
        Layout of the log (``schemas.station_logs.LOG_TYPES``).
    first_line : int, optional
        Line number of the first line of ``data`` in the file (>= 1).

    Returns
    -------
    LogParseResult
        Rows, rejects, count of lines seen and the bytes consumed.

    Raises
    ------
    TypeError
        If ``data`` is not bytes-like.
    ValueError
        If ``first_line`` is below 1.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"parse_log needs bytes, got {type(data).__name__}")
    if first_line < 1:
        raise ValueError(f"first_line must be >= 1, got {first_line}")
    data = bytes(data)
    consumed = data.rfind(b"\n") + 1
    rows: list[LogRow] = []
    rejects: list[LineReject] = []
    lines_total = 0
    for offset, raw in enumerate(data[:consumed].split(b"\n")[:-1]):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        text = raw.decode("utf-8", errors="replace")
        content = text.strip(" \t")
        if not content or content.startswith("#"):
            continue
        lines_total += 1
        number = first_line + offset
        parsed = _parse_line(text, number, log_type)
        if isinstance(parsed, LogRow):
            rows.append(parsed)
        else:
            rejects.append(make_reject(number, parsed[0], parsed[1], raw))
    return LogParseResult(tuple(rows), tuple(rejects), lines_total, consumed)
