"""The unpacked ``.dat`` event-file format of a miniTRASGO station (DOMAIN.md §3).

Shared by the parser (services/ingest), the simulator and every consumer of raw event chunks, so
that the channel order is written down exactly once.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

N_PLANES = 4
N_STRIPS = 4
#: Fields per event line: 6 date/time fields, the trigger type and 64 channel values.
N_TIME_FIELDS = 6
N_CHANNELS = 64
N_FIELDS = N_TIME_FIELDS + 1 + N_CHANNELS

TRIGGER_COINCIDENCE = 1
TRIGGER_SELF = 2
TRIGGER_TYPES = (TRIGGER_COINCIDENCE, TRIGGER_SELF)

#: Order of the planes in a line: plane 4 first.
PLANE_ORDER = (4, 3, 2, 1)
#: Order of the quantities inside one plane block.
QUANTITY_ORDER = ("T_F", "T_B", "Q_F", "Q_B")


def channel_name(plane: int, quantity: str, strip: int) -> str:
    """Column name of one channel, e.g. ``P1_T_F_3`` (plane 1, front time, strip 3)."""
    return f"P{plane}_{quantity}_{strip}"


#: The 64 channel columns in the order they appear in a line (plane 4 first).
CHANNEL_COLUMNS: tuple[str, ...] = tuple(
    channel_name(plane, quantity, strip)
    for plane in PLANE_ORDER
    for quantity in QUANTITY_ORDER
    for strip in range(1, N_STRIPS + 1)
)


def channel_index(plane: int, quantity: str, strip: int) -> int:
    """Position (0-based) of a channel among the 64 values of a line."""
    return (
        PLANE_ORDER.index(plane) * len(QUANTITY_ORDER) * N_STRIPS
        + QUANTITY_ORDER.index(quantity) * N_STRIPS
        + (strip - 1)
    )


_NAME = re.compile(r"^(?:mi0(?P<station>\d)|minI)(?P<stamp>\d{11})\.dat(?:\.tar\.gz)?$")


def parse_dat_filename(name: str) -> tuple[int, datetime]:
    """Station id and UTC acquisition start encoded in a ``.dat`` (or archive) file name.

    ``mi0<S><YY><DDD><HH><MM><SS>.dat``; legacy ``minI...`` names belong to station 1.

    Raises
    ------
    ValueError
        If the name does not follow the convention or encodes an impossible time.
    """
    match = _NAME.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a mi0<S><YY><DDD><HH><MM><SS>.dat name")
    station = int(match["station"]) if match["station"] is not None else 1
    stamp = match["stamp"]
    year, doy = 2000 + int(stamp[0:2]), int(stamp[2:5])
    hour, minute, second = int(stamp[5:7]), int(stamp[7:9]), int(stamp[9:11])
    try:
        start = datetime.strptime(f"{year} {doy} {hour} {minute} {second}", "%Y %j %H %M %S")
    except ValueError as exc:
        raise ValueError(f"{name!r} encodes an impossible time: {exc}") from None
    if start.strftime("%j") != f"{doy:03d}":
        raise ValueError(f"{name!r} encodes day {doy}, which {year} does not have")
    return station, start.replace(tzinfo=UTC)


def dat_filename(station: int, start: datetime) -> str:
    """The ``.dat`` name of a station file whose acquisition starts at ``start`` (UTC)."""
    return f"mi0{station}{start:%y}{start:%j}{start:%H%M%S}.dat"
