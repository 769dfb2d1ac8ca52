"""Whole-file checks of a ``.dat`` file name, shared by ingest and ``mingo process``.

A name is checked before its content: it must follow the station convention, name the station the
file was found on, not start in the future (a station PC with a wrong clock), and not repeat the
acquisition of a file already read under another name (a copy would count every event twice).
Pure: the caller passes the clock and what it has already read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.dat_format import parse_dat_filename
from services.common import rejects as rj
from services.common.rejects import LineReject, make_reject

__all__ = ["FUTURE_TOLERANCE", "DatName", "check_dat_name"]

#: How far ahead of the reading clock an acquisition start may lie before the file is refused.
#: An hour absorbs a station clock that runs a little fast without letting a year-wrong one by.
FUTURE_TOLERANCE = timedelta(hours=1)


@dataclass(frozen=True)
class DatName:
    """What the name of a ``.dat`` file says, and its problem if any.

    Attributes
    ----------
    start : datetime or None
        UTC acquisition start encoded in the name; None when the name does not follow the
        convention.
    reject : LineReject or None
        The whole-file problem (``BAD_FILE_NAME``, ``WRONG_STATION``, ``FUTURE_FILE`` or
        ``DUPLICATE_FILE``), None for a good name.
    """

    start: datetime | None
    reject: LineReject | None


def check_dat_name(
    name: str,
    station: int,
    now: datetime,
    known_starts: Mapping[datetime, str] | None = None,
) -> DatName:
    """Check a ``.dat`` file name found on a station.

    Parameters
    ----------
    name : str
        File name (``mi0124061000000.dat``; for archive members the member's name).
    station : int
        Station the file was found on.
    now : datetime
        The reading clock, UTC aware.
    known_starts : mapping of datetime to str, optional
        Acquisition starts already read for this station, with the file name that held each.

    Returns
    -------
    DatName
        The start and the first problem found, in the order of the module docstring.
    """
    try:
        named_station, start = parse_dat_filename(name)
    except ValueError as exc:
        return DatName(None, make_reject(None, rj.BAD_FILE_NAME, str(exc)))
    if named_station != station:
        detail = f"file name says station {named_station}, found on station {station}"
        return DatName(start, make_reject(None, rj.WRONG_STATION, detail))
    if start > now + FUTURE_TOLERANCE:
        detail = (
            f"acquisition start {start:%Y-%m-%dT%H:%M:%SZ} in the name is "
            f"{(start - now).total_seconds() / 3600:.1f} h ahead of now (station clock wrong?)"
        )
        return DatName(start, make_reject(None, rj.FUTURE_FILE, detail))
    other = (known_starts or {}).get(start)
    if other is not None and other != name:
        detail = f"same acquisition start {start:%Y-%m-%dT%H:%M:%SZ} as {other}, already read"
        return DatName(start, make_reject(None, rj.DUPLICATE_FILE, detail))
    return DatName(start, None)
