"""Numba kernels of the ``.dat`` parser (private: use :mod:`services.ingest.dat_parser`).

The kernels work on the raw bytes of a file (``np.frombuffer(data, np.uint8)``) and never build
Python objects: one pass counts lines so that outputs can be preallocated, one pass validates and
converts every line. Bad lines are reported as small integer records (code, field, aux values,
byte range); the wrapper turns those rare records into readable rejects.

The rules are those of DOMAIN.md §3 and are restated in ``dat_parser`` next to the plain-Python
reference parser that the tests compare these kernels with.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Per-line status codes shared with the wrapper (int8).
ST_BINARY = 1
ST_FIELD_COUNT = 2
ST_GLUED = 3
ST_MALFORMED = 4
ST_BAD_DATE = 5
ST_BAD_TRIGGER = 6

# Sub-kinds of ST_BAD_DATE, carried in the first aux value.
DATE_SYNTAX = 1  # token is not an integer of the right width
DATE_RANGE = 2  # integer outside its range (year 2000-2099, month 1-12, ...)
DATE_NOT_A_DAY = 3  # day beyond the end of its month (2024-02-30)

N_FIELDS = 71
FIRST_VALUE_FIELD = 8
N_VALUES = 64
#: Integer digits allowed in a value: 11 + 4 decimals keep the mantissa below 2**53, so that
#: ``mantissa / 10000.0`` is exactly the double nearest to the decimal text (as ``float()`` gives).
MAX_INT_DIGITS = 11

_SP = 32
_TAB = 9
_LF = 10
_CR = 13
_HASH = 35
_MINUS = 45
_DOT = 46
_D0 = 48
_D9 = 57

# Reject record columns (int64 matrix, one row per rejected line).
R_LINE = 0  # 0-based line index
R_START = 1  # byte offset of the line start
R_END = 2  # byte offset of the line end (terminator and one trailing CR excluded)
R_CODE = 3
R_FIELD = 4  # 1-based field number, 0 when not about one field
R_AUX = 5  # field count, 1-based column of a binary byte, or a date sub-kind
R_AUX2 = 6  # value of the binary byte
R_COLS = 7


@njit(cache=True, nogil=True)
def count_lines(buf: np.ndarray) -> int:  # pragma: no cover - compiled
    """Number of lines: newlines, plus one for a last line without newline."""
    n = buf.shape[0]
    count = 0
    for i in range(n):
        if buf[i] == _LF:
            count += 1
    if n > 0 and buf[n - 1] != _LF:
        count += 1
    return count


@njit(cache=True, nogil=True, inline="always")
def _days_from_civil(y: int, m: int, d: int) -> int:  # pragma: no cover - compiled
    # Howard Hinnant's days_from_civil; y >= 2000 here so floor division is plain.
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    mp = m - 3 if m > 2 else m + 9
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True, nogil=True, inline="always")
def _days_in_month(y: int, m: int) -> int:  # pragma: no cover - compiled
    if m == 2:
        leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
        return 29 if leap else 28
    if m == 4 or m == 6 or m == 9 or m == 11:
        return 30
    return 31


@njit(cache=True, nogil=True)
def token_is_glued(buf: np.ndarray, ts: int, te: int) -> bool:  # pragma: no cover - compiled
    """Whether ``buf[ts:te]`` looks like two numbers written without a separator.

    Only digits, ``.`` and ``-``, at least one ``.``, and either a ``-`` between two digits
    (``12.5-3.1``) or a ``.`` followed by five or more digits (``0000.00002024``).
    """
    has_dot = False
    glued = False
    run = -1  # digits since the last '.', -1 when not after a '.'
    for i in range(ts, te):
        c = buf[i]
        if _D0 <= c <= _D9:
            if run >= 0:
                run += 1
                if run >= 5:
                    glued = True
        elif c == _DOT:
            has_dot = True
            run = 0
        elif c == _MINUS:
            run = -1
            if ts < i < te - 1 and _D0 <= buf[i - 1] <= _D9 and _D0 <= buf[i + 1] <= _D9:
                glued = True
        else:
            return False
    return has_dot and glued


@njit(cache=True, nogil=True)
def first_glued_field(buf: np.ndarray, s: int, e: int) -> int:  # pragma: no cover - compiled
    """1-based number of the first glued-looking token of the line ``buf[s:e]``, or 0."""
    p = s
    field = 0
    while p < e:
        while p < e and (buf[p] == _SP or buf[p] == _TAB):
            p += 1
        if p >= e:
            break
        ts = p
        while p < e and buf[p] != _SP and buf[p] != _TAB:
            p += 1
        field += 1
        if token_is_glued(buf, ts, p):
            return field
    return 0


@njit(cache=True, nogil=True)
def _grown(records: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """A copy of ``records`` with twice the rows (the new rows uninitialised)."""
    bigger = np.empty((2 * records.shape[0], records.shape[1]), records.dtype)
    bigger[: records.shape[0]] = records
    return bigger


@njit(cache=True, nogil=True, boundscheck=False)
def parse_lines(  # pragma: no cover - compiled
    buf: np.ndarray, n_lines: int
) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, np.ndarray, int, np.ndarray, int, int, bool
]:
    """Validate and convert every line of a ``.dat`` file.

    Parameters
    ----------
    buf : ndarray of uint8
        The file content.
    n_lines : int
        ``count_lines(buf)``; sizes the outputs.

    Returns
    -------
    time_s, trigger, line_index, channels : ndarray
        Valid events, compacted: epoch seconds (int64), trigger type (int8), 0-based line index
        (int32) and the (n, 64) float64 values; only the first ``n_valid`` rows are meaningful.
    n_valid : int
    rejects : ndarray of int64, shape (m, R_COLS)
        Records of rejected event lines (see the ``R_*`` columns); first ``n_rejects`` rows.
    n_rejects : int
    comments : ndarray of int64, shape (m, 3)
        Line index, start and end offset of comment lines; first ``n_comments`` rows.
    n_comments : int
    n_blank : int
        Blank lines (only spaces, tabs and a CR).
    terminated : bool
        Whether the last line ends with a newline.
    """
    n = buf.shape[0]
    time_s = np.empty(n_lines, np.int64)
    trigger = np.empty(n_lines, np.int8)
    line_index = np.empty(n_lines, np.int32)
    channels = np.empty((n_lines, N_VALUES), np.float64)
    # Rejects and comments are rare: start small and grow, rather than size them by n_lines.
    rejects = np.empty((16, R_COLS), np.int64)
    comments = np.empty((4, 3), np.int64)
    n_valid = 0
    n_rejects = 0
    n_comments = 0
    n_blank = 0
    terminated = True

    p = 0
    line = 0
    while p < n:
        s = p
        nf = 0
        is_comment = False
        bin_col = -1
        bin_byte = 0
        bad_code = 0  # first bad field's status (when the field count turns out right)
        bad_field = 0
        bad_sub = 0
        bad_ts = 0
        bad_te = 0
        year = 0
        month = 0
        day = 0
        hour = 0
        minute = 0
        second = 0
        trig = 0
        while True:
            while p < n and (buf[p] == _SP or buf[p] == _TAB):
                p += 1
            if p >= n:
                break
            c = buf[p]
            if c == _LF:
                break
            if c == _CR and (p + 1 == n or buf[p + 1] == _LF):
                p += 1
                continue
            if nf == 0 and c == _HASH:
                is_comment = True
                while p < n and buf[p] != _LF:
                    p += 1
                break
            ts = p
            nf += 1
            if bad_code == 0 and bin_col < 0 and FIRST_VALUE_FIELD <= nf <= N_FIELDS:
                # Fast path, one read per byte: -?\d{1,11}\.\d{4} followed by a delimiter,
                # converted as an integer mantissa. Anything else falls to the slow path below.
                q = ts
                neg = buf[q] == _MINUS
                if neg:
                    q += 1
                mant = 0
                nd = 0
                while q < n:
                    d = int(buf[q]) - _D0
                    if d < 0 or d > 9:
                        break
                    mant = mant * 10 + d
                    q += 1
                    nd += 1
                qe = q + 5
                if 0 < nd <= MAX_INT_DIGITS and qe <= n and buf[q] == _DOT:
                    d1 = int(buf[q + 1]) - _D0
                    d2 = int(buf[q + 2]) - _D0
                    d3 = int(buf[q + 3]) - _D0
                    d4 = int(buf[q + 4]) - _D0
                    if (
                        0 <= d1 <= 9
                        and 0 <= d2 <= 9
                        and 0 <= d3 <= 9
                        and 0 <= d4 <= 9
                        and (
                            qe == n
                            or buf[qe] == _SP
                            or buf[qe] == _TAB
                            or buf[qe] == _LF
                            or (buf[qe] == _CR and (qe + 1 == n or buf[qe + 1] == _LF))
                        )
                    ):
                        val = (mant * 10000 + d1 * 1000 + d2 * 100 + d3 * 10 + d4) / 10000.0
                        channels[n_valid, nf - FIRST_VALUE_FIELD] = -val if neg else val
                        p = qe
                        continue
            # Slow path: find the token end and look for non-text bytes.
            while p < n:
                c = buf[p]
                if c == _SP or c == _TAB or c == _LF:  # noqa: SIM109 - explicit compares for numba
                    break
                if c < 32 or c >= 127:
                    if c == _CR and (p + 1 == n or buf[p + 1] == _LF):
                        break
                    if bin_col < 0:
                        bin_col = p - s
                        bin_byte = c
                p += 1
            te = p
            if bad_code != 0 or bin_col >= 0 or nf > N_FIELDS:
                continue
            length = te - ts
            if nf >= FIRST_VALUE_FIELD:
                # the fast path refused this value token
                bad_code = ST_MALFORMED
                bad_field = nf
                bad_ts = ts
                bad_te = te
            elif nf == 7:
                if length == 1 and (buf[ts] == _D0 + 1 or buf[ts] == _D0 + 2):
                    trig = buf[ts] - _D0
                else:
                    bad_code = ST_BAD_TRIGGER
                    bad_field = 7
            else:
                # date/time: year exactly 4 digits, the others 1 or 2 digits
                value = 0
                ok = (length == 4) if nf == 1 else (length == 1 or length == 2)
                if ok:
                    for j in range(ts, te):
                        d = buf[j] - _D0
                        if d < 0 or d > 9:
                            ok = False
                            break
                        value = value * 10 + d
                if not ok:
                    bad_code = ST_BAD_DATE
                    bad_field = nf
                    bad_sub = DATE_SYNTAX
                else:
                    in_range = True
                    if nf == 1:
                        year = value
                        in_range = 2000 <= value <= 2099
                    elif nf == 2:
                        month = value
                        in_range = 1 <= value <= 12
                    elif nf == 3:
                        day = value
                        in_range = 1 <= value <= 31
                    elif nf == 4:
                        hour = value
                        in_range = value <= 23
                    elif nf == 5:
                        minute = value
                        in_range = value <= 59
                    else:
                        second = value
                        in_range = value <= 59
                    if not in_range:
                        bad_code = ST_BAD_DATE
                        bad_field = nf
                        bad_sub = DATE_RANGE
                    elif nf == 6 and day > _days_in_month(year, month):
                        # all six fields are fine alone; the day does not exist in that month
                        bad_code = ST_BAD_DATE
                        bad_field = 3
                        bad_sub = DATE_NOT_A_DAY

        # p is at the newline or at the end of the buffer
        e = p
        if e > s and buf[e - 1] == _CR:
            e -= 1
        if p >= n:
            terminated = False
        else:
            p += 1

        if is_comment:
            if n_comments == comments.shape[0]:
                comments = _grown(comments)
            comments[n_comments, 0] = line
            comments[n_comments, 1] = s
            comments[n_comments, 2] = e
            n_comments += 1
        elif nf == 0:
            n_blank += 1
        else:
            code = 0
            field = 0
            aux = 0
            aux2 = 0
            if bin_col >= 0:
                code = ST_BINARY
                aux = bin_col + 1
                aux2 = bin_byte
            elif nf != N_FIELDS:
                field = first_glued_field(buf, s, e)
                code = ST_GLUED if field > 0 else ST_FIELD_COUNT
                aux = nf
            elif bad_code == ST_MALFORMED:
                code = ST_GLUED if token_is_glued(buf, bad_ts, bad_te) else ST_MALFORMED
                field = bad_field
                aux = nf
            elif bad_code != 0:
                code = bad_code
                field = bad_field
                aux = bad_sub
            if code == 0:
                time_s[n_valid] = (
                    _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
                )
                trigger[n_valid] = trig
                line_index[n_valid] = line
                n_valid += 1
            else:
                if n_rejects == rejects.shape[0]:
                    rejects = _grown(rejects)
                r = rejects[n_rejects]
                r[R_LINE] = line
                r[R_START] = s
                r[R_END] = e
                r[R_CODE] = code
                r[R_FIELD] = field
                r[R_AUX] = aux
                r[R_AUX2] = aux2
                n_rejects += 1
        line += 1

    return (
        time_s,
        trigger,
        line_index,
        channels,
        n_valid,
        rejects,
        n_rejects,
        comments,
        n_comments,
        n_blank,
        terminated,
    )
