"""Rejected input: one record per bad line (or bad file), with a reason code and a readable detail.

Every parser of the ingest side (``.dat`` events, slow-control logs, the mechanical logbook) reports
its problems with :class:`LineReject` and the reason codes below, so that the rejects topic and the
people reading it see one vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from schemas.models import RejectRecord

#: Longest raw text kept in a reject [bytes]. A station line is about 660 bytes; two lines glued
#: together by a lost newline still fit, a runaway binary "line" does not.
MAX_RAW_BYTES: Final = 2048

# --- line problems ---------------------------------------------------------------------------
#: The line does not have the expected number of whitespace-separated fields.
FIELD_COUNT: Final = "FIELD_COUNT"
#: A token holds two values written without a separator (``0000.00002024``, ``12.5-3.1``).
GLUED_TOKENS: Final = "GLUED_TOKENS"
#: A token that should be a number is not one in the expected style (``-120.144.0``).
MALFORMED_NUMBER: Final = "MALFORMED_NUMBER"
#: The date/time fields of an event line are not integers or do not form a real UTC time.
BAD_DATE: Final = "BAD_DATE"
#: The trigger-type field of an event line is not 1 or 2.
BAD_TRIGGER_TYPE: Final = "BAD_TRIGGER_TYPE"
#: A valid event line whose time lies before the file's acquisition start (the time in its name)
#: or a day or more after it (``MINGO_INGEST_MAX_FILE_SPAN_S``): a station clock reset or a
#: misnamed file, whose live time would otherwise span the whole gap.
OUTSIDE_FILE_SPAN: Final = "OUTSIDE_FILE_SPAN"
#: The last line has no newline and is invalid: the file was cut while being written.
TRUNCATED_LINE: Final = "TRUNCATED_LINE"
#: NUL bytes, control characters or non-ASCII bytes where only text is expected.
BINARY_CONTENT: Final = "BINARY_CONTENT"
#: The timestamp of a log line is missing, malformed or not a real time.
BAD_TIMESTAMP: Final = "BAD_TIMESTAMP"
#: A row of the mechanical logbook is unusable (bad dates, positions, trigger pairs, header).
BAD_LOGBOOK_ROW: Final = "BAD_LOGBOOK_ROW"

# --- whole-file problems (``line`` is None) ---------------------------------------------------
#: The file holds no event lines at all.
EMPTY_FILE: Final = "EMPTY_FILE"
#: A daily archive (``.dat.tar.gz``) cannot be opened or unpacked.
CORRUPT_ARCHIVE: Final = "CORRUPT_ARCHIVE"
#: The file name does not follow the station's naming convention.
BAD_FILE_NAME: Final = "BAD_FILE_NAME"
#: The file name names another station than the one it was found on.
WRONG_STATION: Final = "WRONG_STATION"
#: The acquisition start in the file name lies ahead of the clock of ingest (a station PC whose
#: clock is wrong): its minutes would land in the future, so the file is held back whole.
FUTURE_FILE: Final = "FUTURE_FILE"
#: Another file of the station already holds the acquisition that starts at the same second (a
#: copy under another name, e.g. a legacy ``minI`` and a ``mi01`` name): reading it would count
#: every event twice.
DUPLICATE_FILE: Final = "DUPLICATE_FILE"

#: An ERA5 file (GRIB, NetCDF, ZIP) cannot be decoded or lacks what is needed.
BAD_ERA5_FILE: Final = "BAD_ERA5_FILE"

#: Every reason code, for schemas and dashboards.
REASONS: Final = (
    FIELD_COUNT,
    GLUED_TOKENS,
    MALFORMED_NUMBER,
    BAD_DATE,
    BAD_TRIGGER_TYPE,
    OUTSIDE_FILE_SPAN,
    TRUNCATED_LINE,
    BINARY_CONTENT,
    BAD_TIMESTAMP,
    BAD_LOGBOOK_ROW,
    EMPTY_FILE,
    CORRUPT_ARCHIVE,
    BAD_FILE_NAME,
    WRONG_STATION,
    FUTURE_FILE,
    DUPLICATE_FILE,
    BAD_ERA5_FILE,
)


@dataclass(frozen=True)
class LineReject:
    """One rejected line of an input file, or a problem of the whole file.

    Attributes
    ----------
    line : int or None
        1-based line number in the file (comment and blank lines count); None when the problem
        concerns the whole file (empty file, corrupt archive, a file that is not text).
    reason : str
        One of the reason codes of this module (``FIELD_COUNT``, ``BAD_DATE``, ...).
    detail : str
        A sentence naming what is wrong, e.g. ``"70 fields, expected 71"``.
    raw : str
        The line as found in the file, without its line terminator, decoded as UTF-8 with
        replacement characters and cut to :data:`MAX_RAW_BYTES` bytes. Empty for whole-file
        problems.
    """

    line: int | None
    reason: str
    detail: str
    raw: str


def raw_text(raw: bytes | str) -> tuple[str, int]:
    """Bounded, printable-safe text of a rejected line.

    Parameters
    ----------
    raw : bytes or str
        The line without its terminator.

    Returns
    -------
    text : str
        At most :data:`MAX_RAW_BYTES` bytes of the line, decoded with ``errors='replace'``.
    size : int
        Length of the full line [bytes], so callers can say that the text was cut.
    """
    data = raw.encode("utf-8", errors="replace") if isinstance(raw, str) else bytes(raw)
    return data[:MAX_RAW_BYTES].decode("utf-8", errors="replace"), len(data)


def make_reject(line: int | None, reason: str, detail: str, raw: bytes | str = b"") -> LineReject:
    """A :class:`LineReject` whose raw text is bounded; a cut is mentioned in the detail."""
    if reason not in REASONS:
        raise ValueError(f"unknown reject reason {reason!r}")
    text, size = raw_text(raw)
    if size > MAX_RAW_BYTES:
        detail = f"{detail} [raw text cut to {MAX_RAW_BYTES} of {size} bytes]"
    return LineReject(line, reason, detail, text)


def reject_records(
    station: int,
    kind: str,
    source_file: str,
    rejects: Iterable[LineReject],
    archive: str | None = None,
) -> list[RejectRecord]:
    """The reject-topic records of a file's bad lines (or of the whole file), with stable ids."""
    records = []
    for reject in rejects:
        where = "file" if reject.line is None else str(reject.line)
        records.append(
            RejectRecord(
                station=station,
                kind=kind,
                source_file=source_file,
                archive=archive,
                line=reject.line,
                reason=reject.reason,
                detail=reject.detail,
                raw=reject.raw,
                reject_id=f"{station}/{source_file}/{where}",
            )
        )
    return records
