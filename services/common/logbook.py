"""The mechanical logbook of the stations: plane z positions and trigger pairs by date (DOMAIN §2).

The logbook is a CSV file kept by people, with the header
``station,conf,start,end,P1,P2,P3,P4,C1,C2,C3,C4`` (any order and case; extra columns are ignored,
blank lines and lines starting with ``#`` are skipped):

* ``station``: station id (``1``; ``mingo01`` is accepted too);
* ``conf``: configuration number (integer);
* ``start``: first day (``YYYY-MM-DD``, meaning 00:00 UTC) or moment (``YYYY-MM-DD hh:mm[:ss]``,
  UTC unless an offset is written) of the configuration;
* ``end``: empty for a configuration still in force; a date is the LAST day of the configuration
  (inclusive, as people write it: the configuration ends at 00:00 of the next day); a date-time
  is the exclusive end moment;
* ``P1``-``P4``: z of planes 1-4 in mm, strictly increasing (the planes are stacked in order);
* ``C1``-``C4``: trigger plane pairs such as ``12``, ``23``, ``34``, ``13`` (two different planes
  of 1-4, written in either order and stored smaller plane first); empty cells are allowed, at
  least one pair is required; repeated pairs are kept once.

A bad row gives one ``BAD_LOGBOOK_ROW`` reject and the other rows are kept. When several rows of a
station cover a moment, the one with the latest start wins (the most recent statement). Without
a matching row the network defaults apply: z = (0, 150, 300, 450) mm, pairs (12, 23, 34, 13).

Pure functions, no Kafka: ingest publishes the parsed logbook, reconstruct uses the lookups.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.common.rejects import BAD_LOGBOOK_ROW, LineReject, make_reject

__all__ = [
    "DEFAULT_TRIGGER_PAIRS",
    "DEFAULT_Z_MM",
    "LOGBOOK_COLUMNS",
    "LogbookEntry",
    "entry_at",
    "parse_logbook",
    "trigger_pairs_at",
    "z_positions_at",
]

#: Plane z positions when no logbook row applies. [mm]
DEFAULT_Z_MM: tuple[float, float, float, float] = (0.0, 150.0, 300.0, 450.0)
#: Trigger plane pairs when no logbook row applies.
DEFAULT_TRIGGER_PAIRS: tuple[int, ...] = (12, 23, 34, 13)
#: Columns a logbook must have.
LOGBOOK_COLUMNS = (
    *("station", "conf", "start", "end"),
    *("P1", "P2", "P3", "P4"),
    *("C1", "C2", "C3", "C4"),
)

_STATION = re.compile(r"(?:mingo)?0*([0-9]+)", re.IGNORECASE)
_PAIR = re.compile(r"([1-4])([1-4])")
_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class LogbookEntry:
    """One logbook row: the set-up of a station over a time range.

    Attributes
    ----------
    station : int
        Station id.
    conf : int
        Configuration number.
    start : datetime
        First moment of the configuration, UTC aware (inclusive).
    end : datetime or None
        End of the configuration, UTC aware (exclusive); None while still in force.
    z_mm : tuple of 4 float
        z of planes 1-4. [mm]
    trigger_pairs : tuple of int
        Plane pairs that trigger, smaller plane first (``12``, ``23``, ...).
    source : str
        Logbook file the row comes from.
    line : int
        1-based line number of the row in that file.
    """

    station: int
    conf: int
    start: datetime
    end: datetime | None
    z_mm: tuple[float, float, float, float]
    trigger_pairs: tuple[int, ...]
    source: str = ""
    line: int = 0

    def covers(self, when: datetime) -> bool:
        """Whether the configuration is in force at ``when`` (UTC aware)."""
        return self.start <= when and (self.end is None or when < self.end)


class _RowError(ValueError):
    """A bad cell; the message is the reject detail."""


def _time(text: str, column: str, *, is_end: bool) -> datetime:
    """UTC moment of a start/end cell (see the module doc for date-only cells)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _RowError(f"{column} {text!r} is not a date or date-time") from None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if is_end and _DATE_ONLY.fullmatch(text):
        value += timedelta(days=1)  # a written end day is the last day in force
    return value


def _integer(text: str, column: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _RowError(f"{column} {text!r} is not an integer") from None


def _z(cells: dict[str, str]) -> tuple[float, float, float, float]:
    z: list[float] = []
    for column in ("P1", "P2", "P3", "P4"):
        text = cells[column]
        try:
            value = float(text)
        except ValueError:
            raise _RowError(f"{column} {text!r} is not a number of mm") from None
        if not math.isfinite(value):
            raise _RowError(f"{column} {text!r} is not a finite number of mm")
        z.append(value)
    if not z[0] < z[1] < z[2] < z[3]:
        raise _RowError(f"plane z {z} mm are not strictly increasing from P1 to P4")
    return z[0], z[1], z[2], z[3]


def _pairs(cells: dict[str, str]) -> tuple[int, ...]:
    pairs: list[int] = []
    for column in ("C1", "C2", "C3", "C4"):
        text = cells[column]
        if not text:
            continue
        match = _PAIR.fullmatch(text)
        if match is None or match[1] == match[2]:
            raise _RowError(f"{column} {text!r} is not a pair of two different planes 1-4")
        low, high = sorted((int(match[1]), int(match[2])))
        if 10 * low + high not in pairs:
            pairs.append(10 * low + high)
    if not pairs:
        raise _RowError("no trigger pair (C1-C4 all empty)")
    return tuple(pairs)


def _entry(cells: dict[str, str], source: str, line: int) -> LogbookEntry:
    missing = [c for c in ("station", "conf", "start", *("P1", "P2", "P3", "P4")) if not cells[c]]
    if missing:
        raise _RowError(f"empty {', '.join(missing)}")
    station_match = _STATION.fullmatch(cells["station"])
    if station_match is None:
        raise _RowError(f"station {cells['station']!r} is not a station id")
    start = _time(cells["start"], "start", is_end=False)
    end = _time(cells["end"], "end", is_end=True) if cells["end"] else None
    if end is not None and end <= start:
        raise _RowError(f"end {cells['end']!r} is not after start {cells['start']!r}")
    return LogbookEntry(
        station=int(station_match[1]),
        conf=_integer(cells["conf"], "conf"),
        start=start,
        end=end,
        z_mm=_z(cells),
        trigger_pairs=_pairs(cells),
        source=source,
        line=line,
    )


def parse_logbook(text: str, *, source: str) -> tuple[list[LogbookEntry], list[LineReject]]:
    """Parse a logbook CSV.

    Parameters
    ----------
    text : str
        Content of the logbook file.
    source : str
        File name, recorded in the entries and in whole-file reject details.

    Returns
    -------
    entries : list of LogbookEntry
        Valid rows in file order.
    rejects : list of LineReject
        One ``BAD_LOGBOOK_ROW`` per bad row (``line`` None if the header itself is unusable, in
        which case no row is read).
    """
    entries: list[LogbookEntry] = []
    rejects: list[LineReject] = []
    # A CR that does not end a CRLF is a line break too (old editors); csv would raise on it.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")  # the line unit of csv.reader over StringIO
    reader = csv.reader(io.StringIO(text))
    header: dict[str, int] | None = None
    width = 0
    previous_end = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a cell beyond csv's field size limit (128 KiB)
            first, previous_end = previous_end + 1, reader.line_num
            rejects.append(make_reject(first, BAD_LOGBOOK_ROW, f"unreadable CSV: {exc}"))
            continue
        first, previous_end = previous_end + 1, reader.line_num
        raw = "\n".join(line.rstrip("\r") for line in lines[first - 1 : reader.line_num])
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if header is None:
            names = [cell.lower() for cell in cells]
            wanted = [c.lower() for c in LOGBOOK_COLUMNS]
            absent = [c for c, w in zip(LOGBOOK_COLUMNS, wanted, strict=True) if w not in names]
            if absent:
                detail = f"{source}: header lacks column(s) {', '.join(absent)}; no row read"
                return [], [make_reject(None, BAD_LOGBOOK_ROW, detail, raw)]
            header = {c: names.index(w) for c, w in zip(LOGBOOK_COLUMNS, wanted, strict=True)}
            width = len(cells)
            continue
        extra = cells[width:]
        if len(cells) < width or any(extra):
            detail = f"{len(cells)} cells, expected {width}"
            rejects.append(make_reject(first, BAD_LOGBOOK_ROW, detail, raw))
            continue
        try:
            entries.append(_entry({c: cells[i] for c, i in header.items()}, source, first))
        except _RowError as exc:
            rejects.append(make_reject(first, BAD_LOGBOOK_ROW, str(exc), raw))
    if header is None:
        detail = f"{source}: no header row {','.join(LOGBOOK_COLUMNS)}"
        rejects.append(make_reject(None, BAD_LOGBOOK_ROW, detail))
    return entries, rejects


def entry_at(entries: Iterable[LogbookEntry], station: int, when: datetime) -> LogbookEntry | None:
    """The logbook row of ``station`` in force at ``when``, or None.

    Among several matching rows the latest start wins (file order breaks ties: the later row).

    Raises
    ------
    ValueError
        If ``when`` is naive: logbook times are UTC and a naive time is ambiguous.
    """
    if when.tzinfo is None:
        raise ValueError("entry_at needs an aware datetime (UTC)")
    best: LogbookEntry | None = None
    for entry in entries:
        if (
            entry.station == station
            and entry.covers(when)
            and (best is None or entry.start >= best.start)
        ):
            best = entry
    return best


def z_positions_at(
    entries: Iterable[LogbookEntry], station: int, when: datetime
) -> tuple[float, float, float, float]:
    """z of planes 1-4 of ``station`` at ``when`` [mm]; :data:`DEFAULT_Z_MM` without a row."""
    entry = entry_at(entries, station, when)
    return DEFAULT_Z_MM if entry is None else entry.z_mm


def trigger_pairs_at(
    entries: Iterable[LogbookEntry], station: int, when: datetime
) -> tuple[int, ...]:
    """Trigger plane pairs of ``station`` at ``when``; :data:`DEFAULT_TRIGGER_PAIRS` if no row."""
    entry = entry_at(entries, station, when)
    return DEFAULT_TRIGGER_PAIRS if entry is None else entry.trigger_pairs
