"""Column vocabularies shared by the rates, unified, CSV and InfluxDB representations.

Names are the same everywhere (topic, CSV, InfluxDB field), so they are generated once here.
"""

from __future__ import annotations

from schemas.station_logs import LOG_TYPES

#: Angular regions of DOMAIN.md §5.6: vertical, 8 mid-zenith and 4 low-zenith azimuth sectors.
REGIONS: tuple[str, ...] = (
    "high",
    *(f"mid_{k}" for k in range(8)),
    *(f"low_{k}" for k in range(4)),
)

#: Plane topologies (sorted plane numbers that have a hit); 3- and 4-plane ones enter the rates.
TOPOLOGIES: tuple[str, ...] = (
    "1234",
    "123",
    "124",
    "134",
    "234",
    "12",
    "13",
    "14",
    "23",
    "24",
    "34",
    "1",
    "2",
    "3",
    "4",
)
RATE_TOPOLOGIES: tuple[str, ...] = ("1234", "123", "124", "134", "234")

PLANES: tuple[int, ...] = (1, 2, 3, 4)

#: Station slow-control values that appear in the unified row: (column, unit, description).
ENVIRONMENT_COLUMNS: tuple[tuple[str, str, str], ...] = tuple(
    (column.name, column.unit, column.description)
    for log_type in LOG_TYPES
    for column in log_type.columns
)
