"""Pydantic models: the value of every message on every topic.

Each field has a description with its unit in brackets. Times are UTC; integer times end in
``_s`` or ``_ms``; datetimes are timezone-aware and serialised as ISO 8601.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import AwareDatetime, Field, create_model

from schemas.base import Contract, station_field
from schemas.columns import ENVIRONMENT_COLUMNS, PLANES, REGIONS, TOPOLOGIES

ARROW_STREAM: Final = "application/vnd.apache.arrow.stream"


class RawEventChunkEnvelope(Contract):
    """Header of a ``mingo.events.raw.v2`` message; the value is an Arrow IPC stream.

    The Arrow table has ``time_s`` (int64, UTC epoch seconds), ``line`` (int32, 1-based line in the
    source file), ``written`` (uint64, bit c set when channel c of
    ``schemas.dat_format.CHANNEL_COLUMNS`` is non-zero) and ``values``, a list of the event's
    written channel values (float64, raw times and charges [ns]; unwritten channels are 0 = no
    hit); see ``schemas.events``. A chunk holds whole minutes of one trigger type. The buffers
    are uncompressed, or lz4 for an unusually dense chunk (the IPC stream says which).
    """

    station: int = station_field
    source_file: str = Field(description="Name of the .dat file the events come from.")
    archive: str | None = Field(None, description="Daily .dat.tar.gz archive holding the file.")
    chunk_id: str = Field(
        description="Deterministic id <station>/<source_file>/<chunk_index>: a replay overwrites."
    )
    chunk_index: int = Field(ge=0, description="Index of this chunk within the file.")
    chunk_count: int = Field(ge=1, description="Number of chunks the file was cut into.")
    trigger_type: Literal[1, 2] = Field(
        description="1 = coincidence (physics), 2 = self-trigger (noise run, not physics)."
    )
    event_count: int = Field(ge=1, description="Events (rows) in this chunk.")
    first_time_s: int = Field(description="Time of the first event. [s since epoch, UTC]")
    last_time_s: int = Field(description="Time of the last event. [s since epoch, UTC]")
    file_start_s: int = Field(description="Acquisition start from the file name. [s, UTC]")
    file_end_s: int = Field(
        description="End of acquisition: last event second of the file + 1. [s, UTC]"
    )
    content_type: Literal["application/vnd.apache.arrow.stream"] = Field(
        ARROW_STREAM, description="Media type of the message value."
    )


class LogReading(Contract):
    """One slow-control log line (``mingo.logs.raw.v1``)."""

    station: int = station_field
    source: str = Field(description="Log family, e.g. sensors_ext, hv, trigger_rates.")
    time: AwareDatetime = Field(description="Time stamp of the reading. [UTC]")
    values: dict[str, float | None] = Field(
        description="Named values of the line; null where the station wrote nan. [see units]"
    )
    units: dict[str, str] = Field(description="Unit of each value, by name.")
    out_of_range: list[str] = Field(
        default_factory=list,
        description="Names of values outside the network's sanity limits (kept, flagged).",
    )
    source_file: str = Field(description="Log file name.")
    line: int = Field(ge=1, description="1-based line number in the log file.")
    reading_id: str = Field(description="Deterministic id <station>/<source_file>/<line>.")


class RejectRecord(Contract):
    """A line or file that could not be used, with the reason (``mingo.ingest.rejects.v1``)."""

    station: int = station_field
    kind: Literal["dat", "archive", "log", "logbook", "era5"] = Field(
        description="What kind of input was rejected."
    )
    source_file: str = Field(description="File name (the .dat inside an archive, if any).")
    archive: str | None = Field(None, description="Archive holding the file, if any.")
    line: int | None = Field(None, ge=1, description="1-based line number; null = whole file.")
    reason: str = Field(description="Machine-readable reason code, e.g. FIELD_COUNT.")
    detail: str = Field(description="Human-readable explanation.")
    raw: str = Field(description="The rejected text (bounded length).")
    reject_id: str = Field(description="Deterministic id <station>/<source_file>/<line|file>.")


class IngestProgress(Contract):
    """How far a source file has been ingested (compacted ``mingo.ingest.progress.v1``).

    Written in the same Kafka transaction as the data it accounts for, so that after a crash the
    progress and the data agree.
    """

    station: int = station_field
    kind: Literal["dat", "log", "logbook"] = Field(description="What kind of file.")
    file: str = Field(description="File name (for events: the .dat name, also inside archives).")
    archive: str | None = Field(None, description="Archive the file was read from, if any.")
    size_bytes: int = Field(ge=0, description="Size of the source file when read. [bytes]")
    mtime_s: float = Field(description="Modification time of the source file. [s, UTC]")
    offset_bytes: int = Field(ge=0, description="Bytes consumed; reading resumes here. [bytes]")
    next_line: int = Field(ge=1, description="Line number of the first unconsumed line.")
    complete: bool = Field(description="True when the file is fully ingested and closed.")
    lines_total: int = Field(ge=0, description="Data lines seen so far (no comments/blanks).")
    lines_valid: int = Field(ge=0, description="Lines that were published.")
    lines_rejected: int = Field(ge=0, description="Lines sent to the rejects topic.")
    chunks: int = Field(ge=0, description="Raw event chunks published for this file.")
    first_time_s: int | None = Field(None, description="First data time. [s, UTC]")
    last_time_s: int | None = Field(None, description="Last data time. [s, UTC]")


class LogbookPeriod(Contract):
    """One row of a station's mechanical logbook: the set-up in force over a date range."""

    conf: int = Field(description="Configuration number of the station.")
    start: AwareDatetime = Field(description="First moment the configuration holds. [UTC]")
    end: AwareDatetime | None = Field(
        None, description="End of validity (exclusive); null = still in force. [UTC]"
    )
    z_mm: tuple[float, float, float, float] = Field(description="z of planes 1-4. [mm]")
    trigger_pairs: tuple[int, ...] = Field(description="Plane pairs that trigger, e.g. 12, 23.")


class StationLogbook(Contract):
    """The whole logbook of a station (compacted ``mingo.logbook.v1``, latest wins)."""

    station: int = station_field
    periods: list[LogbookPeriod] = Field(description="Valid rows of the logbook, in file order.")
    source_file: str = Field(description="Logbook file name on the station.")
    rejected_rows: int = Field(ge=0, description="Rows that could not be used (see rejects).")


class PipelineStatus(Contract):
    """Health and progress of the pipeline (``mingo.status.v1``): heartbeats and summaries."""

    service: str = Field(description="Service name, e.g. ingest.")
    instance: str = Field(description="Instance id of the service.")
    kind: Literal["heartbeat", "file_summary", "source_ok", "source_error", "stopped"] = Field(
        description="What this status message reports."
    )
    time: AwareDatetime = Field(description="When the status was produced. [UTC]")
    station: int | None = Field(None, ge=0, le=9, description="Station concerned, if any.")
    source: str | None = Field(None, description="Source concerned: dat, a log family, logbook.")
    file: str | None = Field(None, description="File concerned, if any.")
    newest_data_time: AwareDatetime | None = Field(
        None, description="Newest data time seen for this station and source. [UTC]"
    )
    lag_s: float | None = Field(None, description="Now minus newest data time. [s]")
    lines_total: int | None = Field(None, ge=0, description="Data lines in the file. [lines]")
    lines_valid: int | None = Field(None, ge=0, description="Valid lines. [lines]")
    lines_rejected: int | None = Field(None, ge=0, description="Rejected lines. [lines]")
    valid_pct: float | None = Field(None, description="Valid lines / data lines. [%]")
    message: str = Field("", description="Human-readable detail.")


Grid4 = tuple[float, float, float, float]
Sides4 = tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]]


class Calibration(Contract):
    """Calibration constants of one station, one version (compacted ``mingo.calibration.v2``).

    Every ``MinuteRates.calibration_version`` names one of these (or several joined by ``+`` for a
    minute shared by chunks reconstructed with different calibrations); with the raw events of
    the minute's file, the records are enough to recompute the minute exactly. A calibration
    applies to the station's chunks from ``source_file``/``source_chunk`` on, until the next one
    (the station's first calibration also to the chunks held before it). Arrays are indexed
    [plane 1-4][strip 1-4][side].
    """

    station: int = station_field
    version: str = Field(
        description=(
            "<station>-<last pooled event, UTC>Z-<hash of the constants, z and outlier band>; "
            "deterministic."
        )
    )
    pedestal_ns: tuple[Sides4, Sides4, Sides4, Sides4] = Field(
        description="Charge pedestal per plane, strip and side (front, back). [ns]"
    )
    tdif_offset_ns: tuple[Grid4, Grid4, Grid4, Grid4] = Field(
        description="T_dif = (T_B - T_F)/2 plateau centre per plane and strip. [ns]"
    )
    tsum_offset_ns: tuple[Grid4, Grid4, Grid4, Grid4] = Field(
        description="Relative T_sum offset per plane and strip (they sum to 0). [ns]"
    )
    z_mm: Grid4 = Field(description="Plane z positions the chunks are reconstructed with. [mm]")
    outlier_band: tuple[float, float] = Field(
        description=(
            "A second whose count of valid coincidence events is below the first or above the "
            "second value is an outlier second (not live, its events rejected). [events]"
        )
    )
    events: int = Field(ge=0, description="Coincidence events in the pool. [events]")
    first_time_s: int = Field(description="First pooled event. [s since epoch, UTC]")
    last_time_s: int = Field(description="Last pooled event. [s since epoch, UTC]")
    pool_files: list[str] = Field(description="Files whose events were pooled, oldest first.")
    source_file: str = Field(description="File of the first chunk reconstructed with it.")
    source_chunk: int = Field(
        ge=0, description="Index in source_file of the first chunk reconstructed with it."
    )


def _rate_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for topology in TOPOLOGIES:
        fields[f"count_{topology}"] = (
            int,
            Field(ge=0, description=f"Events with topology {topology} in the minute. [events]"),
        )
    for region in (*REGIONS, "total"):
        what = "all 3- and 4-plane events" if region == "total" else f"region {region}"
        fields[f"rate_{region}_hz"] = (float, Field(description=f"Rate of {what}. [Hz]"))
        fields[f"rate_{region}_err_hz"] = (
            float,
            Field(description=f"Poisson error of the rate of {what}. [Hz]"),
        )
    for plane in PLANES:
        fields[f"eff_{plane}"] = (
            float | None,
            Field(description=f"Efficiency of plane {plane}, 3-of-4 method. [1]"),
        )
        fields[f"eff_{plane}_err"] = (
            float | None,
            Field(description=f"Binomial error of the efficiency of plane {plane}. [1]"),
        )
    return fields


MinuteRates = create_model(
    "MinuteRates",
    __base__=Contract,
    __doc__="Calibrated per-minute rates of one station (``mingo.rates.minute.v1``).",
    station=(int, station_field),
    time=(AwareDatetime, Field(description="Start of the minute. [UTC]")),
    live_s=(float, Field(ge=0, le=60, description="Live acquisition time in the minute. [s]")),
    **_rate_fields(),
    q_event_mean=(float | None, Field(description="Mean calibrated event charge. [ns]")),
    rejected_events=(
        int,
        Field(ge=0, description="Impossible events and events in outlier seconds. [events]"),
    ),
    calibration_version=(str, Field(description="Version of the calibration used.")),
)


class Era5Hour(Contract):
    """ERA5 fields at one station for one hour (``mingo.era5.hourly.v1``)."""

    station: int = station_field
    time: AwareDatetime = Field(description="Hour the values are valid at. [UTC]")
    time_convention: Literal["instant"] = Field(
        "instant", description="instant: instantaneous values valid at `time` (not an interval)."
    )
    temp_ground_c: float = Field(description="2 m air temperature. [degC]")
    surface_pressure_hpa: float = Field(description="Surface pressure. [hPa]")
    temp_100hpa_c: float = Field(description="Air temperature at 100 hPa. [degC]")
    height_100hpa_m: float = Field(description="Geopotential height of 100 hPa. [m]")
    t_mw_k: float | None = Field(None, description="Mass-weighted temperature. [K]")
    t_eff_k: float | None = Field(None, description="Effective temperature for muons. [K]")
    expver: str = Field(
        description="ERA5 experiment version: 0001 final, 0005 ERA5T (0005 if any input was)."
    )
    revision: int = Field(
        0,
        ge=0,
        description=(
            "0 when the hour is first published, +1 each time its values change (ERA5T replaced "
            "by final ERA5); per (station, time) the highest revision is the valid one."
        ),
    )
    source_file: str = Field(
        description="Names of the files the values were decoded from, comma-separated, sorted."
    )


def _environment_fields() -> dict[str, Any]:
    return {
        name: (float | None, Field(None, description=f"{description} [{unit}]"))
        for name, unit, description in ENVIRONMENT_COLUMNS
    }


UnifiedMinute = create_model(
    "UnifiedMinute",
    __base__=Contract,
    __doc__="One station-minute of the unified table (``mingo.unified.minute.v1``).",
    station=(int, station_field),
    time=(AwareDatetime, Field(description="Start of the minute. [UTC]")),
    revision=(int, Field(ge=0, description="Incremented each time the row is re-emitted.")),
    live_s=(float, Field(ge=0, le=60, description="Live acquisition time in the minute. [s]")),
    **_rate_fields(),
    q_event_mean=(float | None, Field(description="Mean calibrated event charge. [ns]")),
    **_environment_fields(),
    era5_temp_ground_c=(float | None, Field(None, description="ERA5 2 m temperature. [degC]")),
    era5_surface_pressure_hpa=(
        float | None,
        Field(None, description="ERA5 surface pressure. [hPa]"),
    ),
    era5_temp_100hpa_c=(float | None, Field(None, description="ERA5 100 hPa temperature. [degC]")),
    era5_height_100hpa_m=(float | None, Field(None, description="ERA5 100 hPa height. [m]")),
    era5_t_mw_k=(float | None, Field(None, description="Mass-weighted temperature. [K]")),
    era5_t_eff_k=(float | None, Field(None, description="Effective temperature. [K]")),
    rate_p_corr_hz=(float | None, Field(None, description="Pressure-corrected total rate. [Hz]")),
    rate_p_corr_err_hz=(float | None, Field(None, description="Its uncertainty. [Hz]")),
    rate_pt_corr_hz=(
        float | None,
        Field(None, description="Pressure- and T_eff-corrected total rate. [Hz]"),
    ),
    rate_pt_corr_err_hz=(float | None, Field(None, description="Its uncertainty. [Hz]")),
    rate_eff_corr_hz=(
        float | None,
        Field(None, description="Efficiency-corrected total rate. [Hz]"),
    ),
    rate_eff_corr_err_hz=(float | None, Field(None, description="Its uncertainty. [Hz]")),
    quality_flags=(int, Field(0, ge=0, description="Bitmask of quality flags.")),
    quality=(list[str], Field(default_factory=list, description="Readable quality flags.")),
)


class ColumnFit(Contract):
    """The atmospheric fit of one rate column (part of :class:`Coefficients`)."""

    column: str = Field(description="Rate column: total or an angular region (high, mid_0, ...).")
    beta_pct_per_hpa: float = Field(description="Barometric coefficient β. [%/hPa]")
    beta_err_pct_per_hpa: float = Field(description="Standard error of β. [%/hPa]")
    alpha_t_pct_per_k: float | None = Field(
        None, description="Temperature coefficient α_T (T_eff or ground temperature). [%/K]"
    )
    alpha_t_err_pct_per_k: float | None = Field(None, description="Standard error of α_T. [%/K]")
    alpha_h_pct_per_m: float | None = Field(
        None, description="Duperier coefficient of the 100 hPa height. [%/m]"
    )
    alpha_h_err_pct_per_m: float | None = Field(None, description="Standard error of α_H. [%/m]")
    i0_hz: float = Field(description="Rate at the reference conditions. [Hz]")
    i0_err_hz: float = Field(description="Standard error of the reference rate. [Hz]")
    chi2: float = Field(description="χ² of the fit with Poisson weights. [1]")
    ndf: int = Field(ge=0, description="Degrees of freedom. [1]")
    hours_used: int = Field(ge=0, description="Hours in the fit. [h]")
    hours_excluded: int = Field(ge=0, description="Hours of the span left out. [h]")


class Coefficients(Contract):
    """A versioned record of fitted atmospheric coefficients (``mingo.coefficients.v1``).

    ``mingo process --coefficients DIR`` corrects with the newest record of a station: β from
    every method, α_T only from the ``teff`` method (the corrections use T_eff).
    """

    station: int = station_field
    version: int = Field(ge=1, description="1 for the station's first record, +1 each new one.")
    created: AwareDatetime = Field(description="When the fit was made. [UTC]")
    method: Literal["pressure", "teff", "duperier"] = Field(
        description="pressure: β only; teff: β and α_T on T_eff; duperier: β, α_H, α_T ground."
    )
    start: AwareDatetime = Field(description="Start of the fitted span. [UTC]")
    end: AwareDatetime = Field(description="End of the fitted span (exclusive). [UTC]")
    excluded: list[str] = Field(
        default_factory=list, description="Exclusion windows START/END (ISO 8601, UTC)."
    )
    p0_hpa: float = Field(description="Reference pressure P0. [hPa]")
    teff_ref_k: float | None = Field(None, description="Reference T_eff (teff method). [K]")
    references: dict[str, float] = Field(
        default_factory=dict,
        description="Reference of each temperature regressor, by column (t_eff_k [K], ...).",
    )
    fits: list[ColumnFit] = Field(description="Per rate column; the total first.")


AlertKind = Literal[
    "rate_excursion",
    "barometer_mismatch",
    "hv_out_of_band",
    "current_out_of_band",
    "gas_flow_low",
    "efficiency_drop",
    "data_stopped",
    "logs_stopped",
    "forbush_candidate",
]


class Alert(Contract):
    """An anomaly found in the unified table (``mingo.alerts.v1``).

    The same alert is re-emitted (same ``alert_id``) while it evolves: its end and evidence
    change, the newest message wins. Also written to InfluxDB as an annotation (``alerts``).
    """

    alert_id: str = Field(description="Deterministic id <station|network>/<kind>/<start>.")
    station: int | None = Field(
        None, ge=0, le=9, description="Station concerned; null for a network-level alert."
    )
    stations: list[int] = Field(
        default_factory=list, description="Stations involved (network-level alerts)."
    )
    kind: AlertKind = Field(description="What was detected.")
    severity: Literal["info", "warning", "critical"] = Field(
        description="info: physics (Forbush candidate); warning: degraded; critical: no data."
    )
    start: AwareDatetime = Field(description="First minute of the anomaly (its onset). [UTC]")
    end: AwareDatetime | None = Field(
        None, description="Minute after the last anomalous one; null while ongoing. [UTC]"
    )
    detected: AwareDatetime = Field(
        description="Data time at which the condition was confirmed (start + sustain). [UTC]"
    )
    evidence: dict[str, float] = Field(
        default_factory=dict, description="Values behind the alert (names carry their units)."
    )
    message: str = Field(description="Human-readable summary.")
