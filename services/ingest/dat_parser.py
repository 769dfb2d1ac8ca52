"""Parser of unpacked ``.dat`` event files (DOMAIN.md §3): the hot path of ingest.

A valid event line has exactly 71 fields separated by spaces or tabs (a CR before the newline is
tolerated):

* fields 1-6 ``YYYY MM DD hh mm ss``: integers, the year with exactly 4 digits in 2000-2099, the
  others with 1 or 2 digits, together a real UTC time (leap years included, seconds 0-59);
* field 7: the trigger type, exactly ``1`` or ``2``;
* fields 8-71: the 64 channel values in the station's ``%09.4f`` style: optional ``-``, 1 to 11
  digits, ``.``, exactly 4 digits. The strictness is what catches glued tokens (``0000.00002024``)
  and cut last tokens. (11 integer digits keep the value exact; the station prints 4.)

Other lines:

* a line whose first non-blank character is ``#`` is a comment (kept in ``comments``);
* a line of only spaces, tabs and a CR is blank and ignored;
* every other line is an event line: it is either valid or gives exactly one
  :class:`~services.common.rejects.LineReject`, and parsing always goes on with the next line.

Reason of a rejected line, first rule that applies:

1. ``BINARY_CONTENT``: a byte other than tab and printable ASCII (NUL, control characters, a CR
   inside the line, non-ASCII). A station line is pure ASCII, so such a byte means corruption.
2. ``GLUED_TOKENS`` if the field count is not 71 and some token looks like two numbers written
   together (digits, ``.`` and ``-`` only, with a ``-`` between two digits or a ``.`` followed by
   five or more digits); else ``FIELD_COUNT``.
3. The first bad field, in field order: ``BAD_DATE`` (fields 1-6 each checked alone first, then
   whether the day exists in its month, reported on field 3), ``BAD_TRIGGER_TYPE`` (field 7),
   ``GLUED_TOKENS`` or ``MALFORMED_NUMBER`` (fields 8-71).
4. If the rejected line is the last one and has no newline, the reason becomes ``TRUNCATED_LINE``
   (the station was cut while writing) and the detail keeps the underlying problem.

The file-span rule (:func:`limit_to_file_span`, applied by :func:`parse_dat_file`): a file holds
about an hour of acquisition that starts at the UTC time in its name (DOMAIN.md §3), and the
acquisition interval of a file runs from that start to its last event. A valid line whose time is
before the start, or at or after start + ``max_span_s``, is rejected with ``OUTSIDE_FILE_SPAN``
(a station clock reset, a misnamed file): it would otherwise vanish from the counts (before the
start) or stretch the file's live time over the whole gap. A file without a usable name time
starts at its first event, and the span still applies from there. The rule is a pure function of
the parse result and the name time, kept apart from :func:`parse_dat` (which sees only bytes), so
that ingest, ``mingo reconstruct`` and ``mingo process`` apply it identically.

Whole-file problems (``line`` None): a file without event lines (empty, or only comments and
blanks) gives one ``EMPTY_FILE`` reject. A file with no valid line where more than half of the
event lines hold non-text bytes is not a ``.dat`` file at all (an archive, a disk block of
zeros): its per-line rejects are replaced by one ``BINARY_CONTENT`` reject, so that a misplaced
binary file does not flood the rejects topic (``lines_total`` still counts its lines, so the valid
fraction is 0 %). A text file with a binary tail keeps its valid lines.

:func:`parse_dat` runs numba kernels (``_kernels``) at several hundred MB/s;
:func:`parse_dat_reference` is the same specification in plain Python, slow and obvious, and the
tests check that both agree exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Final

import numpy as np

from schemas.dat_format import N_CHANNELS, N_FIELDS
from services.common.rejects import (
    BAD_DATE,
    BAD_TRIGGER_TYPE,
    BINARY_CONTENT,
    EMPTY_FILE,
    FIELD_COUNT,
    GLUED_TOKENS,
    MALFORMED_NUMBER,
    OUTSIDE_FILE_SPAN,
    TRUNCATED_LINE,
    LineReject,
    make_reject,
)
from services.ingest import _kernels as k

__all__ = [
    "MAX_FILE_SPAN_S",
    "DatParseResult",
    "limit_to_file_span",
    "parse_dat",
    "parse_dat_file",
    "parse_dat_reference",
]

#: Longest acquisition one ``.dat`` file may span from its start, by default [s]: one day, well
#: above the ~1 h of a station file and still above a whole day in one file, while a clock reset
#: or a misnamed file (days to years off) is caught.
MAX_FILE_SPAN_S: Final = 86_400

_DATE_NAMES = ("year", "month", "day", "hour", "minute", "second")
_DATE_RANGES = ((2000, 2099), (1, 12), (1, 31), (0, 23), (0, 59), (0, 59))
_BLANKS = re.compile(r"[ \t]+")

_STATUS_REASON = {
    k.ST_BINARY: BINARY_CONTENT,
    k.ST_FIELD_COUNT: FIELD_COUNT,
    k.ST_GLUED: GLUED_TOKENS,
    k.ST_MALFORMED: MALFORMED_NUMBER,
    k.ST_BAD_DATE: BAD_DATE,
    k.ST_BAD_TRIGGER: BAD_TRIGGER_TYPE,
}


@dataclass(frozen=True, eq=False)
class DatParseResult:
    """Events and problems of one ``.dat`` file.

    Results compare by identity (they hold arrays); compare the fields to compare contents.

    Attributes
    ----------
    time_s : ndarray of int64, shape (n,)
        Event times. [s since 1970-01-01, UTC]
    trigger_type : ndarray of int8, shape (n,)
        1 coincidence (physics), 2 self-trigger.
    line_number : ndarray of int32, shape (n,)
        1-based line number of each event in the file (comment and blank lines count).
    channels : ndarray of float64, shape (n, 64)
        Raw channel values in ``schemas.dat_format.CHANNEL_COLUMNS`` order. [ns]
    rejects : tuple of LineReject
        One per rejected event line, in line order, plus whole-file problems (``line`` None).
    lines_total : int
        Event lines seen: lines that are neither comments nor blank.
    comments : tuple of str
        Comment lines without their terminator, e.g. ``'# param_hash=...'``.
    """

    time_s: np.ndarray
    trigger_type: np.ndarray
    line_number: np.ndarray
    channels: np.ndarray
    rejects: tuple[LineReject, ...]
    lines_total: int
    comments: tuple[str, ...] = field(default=())

    @property
    def lines_valid(self) -> int:
        """Number of valid event lines."""
        return int(self.time_s.shape[0])

    @property
    def valid_fraction(self) -> float:
        """Percentage of valid event lines, as the reference system records it. [%]

        0.0 for a file without event lines.
        """
        if self.lines_total == 0:
            return 0.0
        return 100.0 * self.lines_valid / self.lines_total


# --- detail sentences, shared by the kernel wrapper and the reference parser ----------------


def _msg_binary(byte: int, column: int) -> str:
    return f"non-text byte 0x{byte:02x} at column {column}"


def _msg_field_count(n_fields: int) -> str:
    return f"{n_fields} fields, expected {N_FIELDS}"


def _msg_glued(field_no: int, token: str, n_fields: int) -> str:
    msg = f"field {field_no} {token!r} looks like two values written together"
    if n_fields != N_FIELDS:
        msg += f" ({n_fields} fields, expected {N_FIELDS})"
    return msg


def _msg_malformed(field_no: int, token: str) -> str:
    return f"field {field_no} {token!r} is not a number of the form [-]digits.dddd"


def _msg_date_syntax(field_no: int, token: str) -> str:
    what = "a 4-digit year" if field_no == 1 else f"a 1- or 2-digit {_DATE_NAMES[field_no - 1]}"
    return f"field {field_no} {token!r} is not {what}"


def _msg_date_range(field_no: int, value: int) -> str:
    low, high = _DATE_RANGES[field_no - 1]
    return f"{_DATE_NAMES[field_no - 1]} {value} is outside {low}-{high}"


def _msg_not_a_day(year: int, month: int, day: int) -> str:
    return f"{year:04d}-{month:02d}-{day:02d} is not a date"


def _msg_trigger(token: str) -> str:
    return f"field 7 {token!r} is not a trigger type (1 or 2)"


def _msg_truncated(detail: str) -> str:
    return f"last line has no newline and is invalid: {detail}"


def _msg_empty(size: int, n_comments: int, n_blank: int) -> str:
    if size == 0:
        return "file is empty (0 bytes)"
    return f"no event lines ({n_comments} comment and {n_blank} blank lines)"


def _msg_not_text(n_binary: int, n_lines: int) -> str:
    return (
        f"not a text file: {n_binary} of {n_lines} event lines hold non-text bytes "
        "and none is valid"
    )


def _finish_rejects(
    rejects: list[LineReject],
    binary_lines: int,
    lines_valid: int,
    lines_total: int,
    size: int,
    n_comments: int,
    n_blank: int,
) -> tuple[LineReject, ...]:
    """Apply the whole-file rules (empty file, not a text file)."""
    if lines_total == 0:
        return (make_reject(None, EMPTY_FILE, _msg_empty(size, n_comments, n_blank)),)
    if lines_valid == 0 and 2 * binary_lines > lines_total:
        return (make_reject(None, BINARY_CONTENT, _msg_not_text(binary_lines, lines_total)),)
    return tuple(rejects)


# --- the fast path ---------------------------------------------------------------------------


def _as_buffer(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """A read-only 1-D uint8 view of the input (one kernel specialisation for every input)."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8 or data.ndim != 1:
            raise TypeError(
                f"parse_dat needs a 1-D uint8 array, got {data.ndim}-D {data.dtype} array"
            )
        buf = np.ascontiguousarray(data).view()
    elif isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        if not view.c_contiguous:
            raise ValueError("parse_dat needs a contiguous buffer")
        buf = np.frombuffer(view.cast("B") if view.format != "B" else view, dtype=np.uint8)
    else:
        hint = " (encode text first)" if isinstance(data, str) else ""
        raise TypeError(
            f"parse_dat needs bytes, memoryview or a uint8 array, got {type(data).__name__}{hint}"
        )
    buf.flags.writeable = False
    return buf


def _kernel_reject(buf: np.ndarray, rec: np.ndarray) -> tuple[str, str, bytes]:
    """Reason, detail and raw bytes of one kernel reject record."""
    raw = buf[rec[k.R_START] : rec[k.R_END]].tobytes()
    code = int(rec[k.R_CODE])
    field_no = int(rec[k.R_FIELD])
    aux = int(rec[k.R_AUX])
    if code == k.ST_BINARY:
        return BINARY_CONTENT, _msg_binary(int(rec[k.R_AUX2]), aux), raw
    if code == k.ST_FIELD_COUNT:
        return FIELD_COUNT, _msg_field_count(aux), raw
    # Lines without binary bytes are ASCII, so decoding and splitting mirror the kernel's tokens.
    tokens = _BLANKS.split(raw.decode("ascii").strip(" \t"))
    token = tokens[field_no - 1]
    if code == k.ST_GLUED:
        return GLUED_TOKENS, _msg_glued(field_no, token, aux), raw
    if code == k.ST_MALFORMED:
        return MALFORMED_NUMBER, _msg_malformed(field_no, token), raw
    if code == k.ST_BAD_TRIGGER:
        return BAD_TRIGGER_TYPE, _msg_trigger(token), raw
    if aux == k.DATE_SYNTAX:
        return BAD_DATE, _msg_date_syntax(field_no, token), raw
    if aux == k.DATE_RANGE:
        return BAD_DATE, _msg_date_range(field_no, int(token)), raw
    year, month, day = (int(t) for t in tokens[:3])
    return BAD_DATE, _msg_not_a_day(year, month, day), raw


def parse_dat(data: bytes | bytearray | memoryview | np.ndarray) -> DatParseResult:
    """Parse the content of an unpacked ``.dat`` file.

    Parameters
    ----------
    data : bytes, bytearray, memoryview or ndarray of uint8
        The whole file content (the last line may lack its newline).

    Returns
    -------
    DatParseResult
        Valid events as arrays, one reject per bad event line, comments and line counts.

    Raises
    ------
    TypeError
        If ``data`` is not a bytes-like object or a 1-D uint8 array.
    ValueError
        If ``data`` is a non-contiguous buffer.
    """
    buf = _as_buffer(data)
    n_lines = k.count_lines(buf)
    (
        time_s,
        trigger,
        line_index,
        channels,
        n_valid,
        records,
        n_rejects,
        comment_records,
        n_comments,
        n_blank,
        terminated,
    ) = k.parse_lines(buf, n_lines)

    rejects: list[LineReject] = []
    binary_lines = 0
    for rec in records[:n_rejects]:
        reason, detail, raw = _kernel_reject(buf, rec)
        binary_lines += reason == BINARY_CONTENT
        if not terminated and rec[k.R_LINE] == n_lines - 1:
            reason, detail = TRUNCATED_LINE, _msg_truncated(detail)
        rejects.append(make_reject(int(rec[k.R_LINE]) + 1, reason, detail, raw))
    comments = tuple(
        buf[start:end].tobytes().decode("utf-8", errors="replace")
        for _, start, end in comment_records[:n_comments]
    )
    lines_total = int(n_valid + n_rejects)

    channels = channels[:n_valid]
    if 2 * n_valid < n_lines:
        # mostly rejects: do not keep the preallocated block alive behind a small view
        channels = channels.copy()
    return DatParseResult(
        time_s=time_s[:n_valid],
        trigger_type=trigger[:n_valid],
        line_number=line_index[:n_valid] + np.int32(1),
        channels=channels,
        rejects=_finish_rejects(
            rejects, binary_lines, int(n_valid), lines_total, buf.size, n_comments, n_blank
        ),
        lines_total=lines_total,
        comments=comments,
    )


# --- the file-span rule ------------------------------------------------------------------------


def _utc_text(time_s: int) -> str:
    return f"{datetime.fromtimestamp(time_s, UTC):%Y-%m-%dT%H:%M:%SZ}"


def _msg_before_start(time_s: int, start_s: int, origin: str) -> str:
    return f"event time {_utc_text(time_s)} before the file's start {_utc_text(start_s)} ({origin})"


def _msg_beyond_span(time_s: int, start_s: int, origin: str, max_span_s: int) -> str:
    return (
        f"event time {_utc_text(time_s)} is {time_s - start_s} s after the file's start "
        f"{_utc_text(start_s)} ({origin}), at or beyond the longest file span of {max_span_s} s"
    )


def _line_texts(
    data: bytes | bytearray | memoryview | np.ndarray, lines: np.ndarray
) -> list[bytes]:
    """Raw text of the given 1-based lines, without terminators (a CR before the LF dropped)."""
    buf = _as_buffer(data)
    ends = np.flatnonzero(buf == ord("\n"))
    starts = np.r_[0, ends + 1]
    ends = np.r_[ends, buf.size]
    texts = []
    for line in lines:
        raw = buf[starts[line - 1] : ends[line - 1]].tobytes()
        texts.append(raw.removesuffix(b"\r"))
    return texts


def limit_to_file_span(
    data: bytes | bytearray | memoryview | np.ndarray,
    result: DatParseResult,
    start_s: int | None,
    max_span_s: int = MAX_FILE_SPAN_S,
) -> DatParseResult:
    """Reject the valid events of a file outside its acquisition span (``OUTSIDE_FILE_SPAN``).

    Parameters
    ----------
    data : bytes, bytearray, memoryview or ndarray of uint8
        The file content ``result`` was parsed from (for the raw text of rejected lines).
    result : DatParseResult
        ``parse_dat(data)``.
    start_s : int or None
        Acquisition start from the file name [s since epoch, UTC]; None when the name gives none,
        and then the first event is the start.
    max_span_s : int
        Events at or after ``start_s + max_span_s`` are rejected (> 0). [s]

    Returns
    -------
    DatParseResult
        ``result`` itself when every event lies in ``[start_s, start_s + max_span_s)``, else a
        copy without the events outside, whose rejects (in line order) name each of them;
        ``lines_total`` is unchanged, so they lower the valid fraction.
    """
    if max_span_s <= 0:
        raise ValueError(f"max_span_s must be positive, got {max_span_s}")
    times = result.time_s
    if not len(times):
        return result
    origin = "file name"
    if start_s is None:
        start_s, origin = int(times.min()), "first event"
    early = times < start_s
    late = times >= start_s + max_span_s
    outside = early | late
    if not outside.any():
        return result
    rows = np.flatnonzero(outside)
    texts = _line_texts(data, result.line_number[rows])
    added = [
        make_reject(
            int(result.line_number[row]),
            OUTSIDE_FILE_SPAN,
            _msg_before_start(int(times[row]), start_s, origin)
            if early[row]
            else _msg_beyond_span(int(times[row]), start_s, origin, max_span_s),
            raw,
        )
        for row, raw in zip(rows, texts, strict=True)
    ]
    keep = ~outside
    return replace(
        result,
        time_s=times[keep],
        trigger_type=result.trigger_type[keep],
        line_number=result.line_number[keep],
        channels=result.channels[keep],
        # every event line has a number, so these rejects all carry one
        rejects=tuple(sorted([*result.rejects, *added], key=lambda r: r.line or 0)),
    )


def parse_dat_file(
    data: bytes | bytearray | memoryview | np.ndarray,
    start_s: int | None,
    max_span_s: int = MAX_FILE_SPAN_S,
) -> DatParseResult:
    """:func:`parse_dat`, then :func:`limit_to_file_span`: how every reader takes a station file.

    ``data`` is the whole file content; ``start_s`` and ``max_span_s`` are as for
    :func:`limit_to_file_span`. Returns the events inside the span and one reject per bad line
    or out-of-span event.
    """
    return limit_to_file_span(data, parse_dat(data), start_s, max_span_s)


# --- the reference -----------------------------------------------------------------------------

_NON_TEXT = re.compile(rb"[^\t\x20-\x7e]")
_VALUE = re.compile(rb"-?[0-9]{1,11}\.[0-9]{4}")
_GLUED_CHARS = re.compile(rb"[0-9.\-]+")
_GLUED_SIGNS = re.compile(rb"[0-9]-[0-9]|\.[0-9]{5}")


def _looks_glued(token: bytes) -> bool:
    return (
        _GLUED_CHARS.fullmatch(token) is not None
        and b"." in token
        and _GLUED_SIGNS.search(token) is not None
    )


def _reference_line(line: bytes) -> tuple[datetime, int, list[float]] | tuple[str, str]:
    """Values of a valid event line, or (reason, detail) of an invalid one."""
    bad = _NON_TEXT.search(line)
    if bad is not None:
        return BINARY_CONTENT, _msg_binary(line[bad.start()], bad.start() + 1)
    tokens = line.split()
    if len(tokens) != N_FIELDS:
        for i, token in enumerate(tokens, start=1):
            if _looks_glued(token):
                return GLUED_TOKENS, _msg_glued(i, token.decode(), len(tokens))
        return FIELD_COUNT, _msg_field_count(len(tokens))
    date: list[int] = []
    for i, token in enumerate(tokens[:6], start=1):
        width_ok = len(token) == 4 if i == 1 else len(token) in (1, 2)
        if not (width_ok and token.isdigit()):
            return BAD_DATE, _msg_date_syntax(i, token.decode())
        low, high = _DATE_RANGES[i - 1]
        if not low <= int(token) <= high:
            return BAD_DATE, _msg_date_range(i, int(token))
        date.append(int(token))
    try:
        when = datetime(date[0], date[1], date[2], date[3], date[4], date[5], tzinfo=UTC)
    except ValueError:
        return BAD_DATE, _msg_not_a_day(*date[:3])
    if tokens[6] not in (b"1", b"2"):
        return BAD_TRIGGER_TYPE, _msg_trigger(tokens[6].decode())
    values = []
    for i, token in enumerate(tokens[7:], start=8):
        if _VALUE.fullmatch(token) is None:
            if _looks_glued(token):
                return GLUED_TOKENS, _msg_glued(i, token.decode(), N_FIELDS)
            return MALFORMED_NUMBER, _msg_malformed(i, token.decode())
        values.append(float(token))
    return when, int(tokens[6]), values


def parse_dat_reference(data: bytes) -> DatParseResult:
    """Plain-Python parser with the same rules as :func:`parse_dat` (slow; for tests).

    Parameters
    ----------
    data : bytes
        The whole file content.

    Returns
    -------
    DatParseResult
        Identical to ``parse_dat(data)``.
    """
    lines = data.split(b"\n")
    terminated = data.endswith(b"\n") or not data
    if terminated:
        lines.pop()  # the empty text after the last newline is not a line
    times: list[int] = []
    triggers: list[int] = []
    numbers: list[int] = []
    rows: list[list[float]] = []
    rejects: list[LineReject] = []
    comments: list[str] = []
    n_blank = 0
    binary_lines = 0
    for number, line in enumerate(lines, start=1):
        if line.endswith(b"\r"):
            line = line[:-1]
        content = line.strip(b" \t")
        if not content:
            n_blank += 1
            continue
        if content.startswith(b"#"):
            comments.append(line.decode("utf-8", errors="replace"))
            continue
        parsed = _reference_line(line)
        if isinstance(parsed[0], str):
            reason, detail = parsed[0], str(parsed[1])
            binary_lines += reason == BINARY_CONTENT
            if number == len(lines) and not terminated:
                reason, detail = TRUNCATED_LINE, _msg_truncated(detail)
            rejects.append(make_reject(number, reason, detail, line))
            continue
        when, trigger, values = parsed
        times.append(int(when.timestamp()))
        triggers.append(trigger)
        numbers.append(number)
        rows.append(values)
    lines_total = len(times) + len(rejects)
    return DatParseResult(
        time_s=np.array(times, dtype=np.int64),
        trigger_type=np.array(triggers, dtype=np.int8),
        line_number=np.array(numbers, dtype=np.int32),
        channels=np.array(rows, dtype=np.float64).reshape(len(rows), N_CHANNELS),
        rejects=_finish_rejects(
            rejects, binary_lines, len(times), lines_total, len(data), len(comments), n_blank
        ),
        lines_total=lines_total,
        comments=tuple(comments),
    )
