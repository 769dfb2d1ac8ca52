"""Slow-control log files of a station (DOMAIN.md §4): layouts, units and sanity limits.

One table shared by the ingest parser and the simulator. A log line is an ISO timestamp
(``YYYY-MM-DDThh:mm:ss``, optionally followed by ``;``, or with a space instead of ``T``), then
whitespace-separated values (``nan`` allowed). Columns are addressed by their position after the
timestamp; positions not listed are unused by the network.

``min_fields`` counts the timestamp as one field, as the network's reference reader does, so a line
needs at least ``min_fields - 1`` values after its timestamp. For ``hv0_`` that means 21 values:
6 unused, the 4 named ones and 11 trailing unused columns.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LogColumn:
    """One named value of a log line."""

    name: str
    position: int  #: 0-based index among the values after the timestamp
    unit: str
    description: str
    low: float | None = None  #: sanity limits (inclusive); outside -> flagged, value kept
    high: float | None = None


@dataclass(frozen=True)
class LogType:
    """A slow-control log family, identified by its file-name prefix."""

    source: str  #: short name used in topics and tables, e.g. ``sensors_ext``
    prefix: str  #: file-name prefix, e.g. ``sensors_bus0_``
    cadence_s: int  #: nominal interval between lines [s]
    min_fields: int  #: minimum fields including the timestamp (counted as one)
    columns: tuple[LogColumn, ...]

    @property
    def min_values(self) -> int:
        """Minimum number of values after the timestamp."""
        return self.min_fields - 1

    def filename(self, day: str) -> str:
        """File name of this log for a UTC day given as ``YYYY-MM-DD``."""
        return f"{self.prefix}{day}.log"


def _bme280(where: str, low_t: float, high_t: float) -> tuple[LogColumn, ...]:
    return (
        LogColumn(f"temperature_{where}", 4, "degC", f"Air temperature ({where}).", low_t, high_t),
        LogColumn(f"rh_{where}", 5, "%", f"Relative humidity ({where}).", 0.0, 100.0),
        LogColumn(f"pressure_{where}", 6, "hPa", f"Barometric pressure ({where}).", 500.0, 1300.0),
    )


LOG_TYPES: tuple[LogType, ...] = (
    LogType("sensors_ext", "sensors_bus0_", 900, 8, _bme280("ext", 0.0, 50.0)),
    LogType("sensors_int", "sensors_bus1_", 900, 8, _bme280("int", 0.0, 100.0)),
    LogType(
        "hv",
        "hv0_",
        900,
        22,
        (
            LogColumn("current_neg", 6, "uA", "Current of the negative HV supply."),
            LogColumn("current_pos", 7, "uA", "Current of the positive HV supply."),
            LogColumn("hv_neg", 8, "kV", "Negative high voltage (magnitude).", -0.1, 20.0),
            LogColumn("hv_pos", 9, "kV", "Positive high voltage.", -0.1, 20.0),
        ),
    ),
    LogType(
        "trigger_rates",
        "rates_",
        300,
        12,
        (
            LogColumn("asserted", 0, "Hz", "TRB asserted trigger rate.", 0.0, 60.0),
            LogColumn("edge", 1, "Hz", "TRB edge trigger rate.", 0.0, 45.0),
            LogColumn("accepted", 2, "Hz", "TRB accepted trigger rate.", 0.0, 30.0),
            *(
                LogColumn(f"multiplexer_{i}", 2 + i, "Hz", f"Multiplexer {i} rate.", 0.0, 400.0)
                for i in range(1, 5)
            ),
            *(
                LogColumn(f"cm_{i}", 6 + i, "Hz", f"Coincidence module {i} rate.", 0.0, 30.0)
                for i in range(1, 5)
            ),
        ),
    ),
    LogType(
        "gas_flow",
        "Flow0_",
        900,
        5,
        tuple(
            LogColumn(f"flow_{i}", i - 1, "a.u.", f"Gas flow rate of RPC {i}.", 0.0, 1500.0)
            for i in range(1, 5)
        ),
    ),
    LogType(
        "disk",
        "Odroid_",
        300,
        4,
        (
            LogColumn("disk_fill_1", 0, "%", "Fill level of station disk 1.", 0.0, 100.0),
            LogColumn("disk_fill_2", 1, "%", "Fill level of station disk 2.", 0.0, 100.0),
            LogColumn("disk_fill_x", 2, "%", "Fill level of the extra station disk.", 0.0, 100.0),
        ),
    ),
)

LOG_TYPES_BY_SOURCE = {log_type.source: log_type for log_type in LOG_TYPES}


def log_type_of_file(name: str) -> LogType | None:
    """The log type a file name belongs to (``<prefix>YYYY-MM-DD.log``), or None."""
    if not name.endswith(".log"):
        return None
    for log_type in LOG_TYPES:
        if name.startswith(log_type.prefix):
            return log_type
    return None
