"""The topic registry: every topic of the dataflow, its key, partitions, retention and value.

All topics that are joined (rates, logs, ERA5) are keyed by station id and share one partition
count, so a station's data meets in one task of the joining service (co-partitioning).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from schemas.base import Contract
from schemas.models import (
    Alert,
    Calibration,
    Coefficients,
    Era5Hour,
    IngestProgress,
    LogReading,
    MinuteRates,
    PipelineStatus,
    RawEventChunkEnvelope,
    RejectRecord,
    StationLogbook,
    UnifiedMinute,
)

#: Partitions of every station-keyed topic; they must all agree (co-partitioning).
STATION_PARTITIONS = 4
DAY_MS = 24 * 3600 * 1000


#: Largest message a topic takes (``max.message.bytes``) and the producers send: a raw chunk of
#: unusual density may exceed Kafka's 1 MB default (schemas/events.py). [bytes]
MAX_MESSAGE_BYTES: Final = 8 * 1024 * 1024


@dataclass(frozen=True)
class TopicSpec:
    """One topic: what it carries and how the broker keeps it."""

    name: str
    key: str  #: what the message key is
    value_format: Literal["json", "arrow-ipc"]
    model: type[Contract]  #: the value (for arrow-ipc: the envelope in the header)
    description: str
    partitions: int = STATION_PARTITIONS
    cleanup_policy: Literal["delete", "compact"] = "delete"
    retention_ms: int = 30 * DAY_MS  #: -1 = forever
    max_message_bytes: int = MAX_MESSAGE_BYTES
    extra_config: dict[str, str] = field(default_factory=dict)

    def broker_config(self) -> dict[str, str]:
        """Topic-level configs for CreateTopics (explicit, so no broker default is relied on)."""
        config = {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            "max.message.bytes": str(self.max_message_bytes),
        }
        config.update(self.extra_config)
        return config


EVENTS_RAW = TopicSpec(
    "mingo.events.raw.v2",
    key="station id",
    value_format="arrow-ipc",
    model=RawEventChunkEnvelope,
    description=(
        "Raw events as sparse Arrow IPC chunks of whole minutes (written channels only); "
        "envelope in header 'envelope'."
    ),
    retention_ms=14 * DAY_MS,
)
LOGS_RAW = TopicSpec(
    "mingo.logs.raw.v1",
    key="station id",
    value_format="json",
    model=LogReading,
    description="Slow-control log readings with units and sanity flags.",
    retention_ms=-1,
)
REJECTS = TopicSpec(
    "mingo.ingest.rejects.v1",
    key="station id",
    value_format="json",
    model=RejectRecord,
    description="Lines and files that could not be used, with reason and raw text.",
    retention_ms=90 * DAY_MS,
)
INGEST_PROGRESS = TopicSpec(
    "mingo.ingest.progress.v1",
    key="<station>/<kind>/<file>",
    value_format="json",
    model=IngestProgress,
    description="How far each source file has been ingested (written with the data).",
    partitions=1,
    cleanup_policy="compact",
    retention_ms=-1,
)
LOGBOOK = TopicSpec(
    "mingo.logbook.v1",
    key="station id",
    value_format="json",
    model=StationLogbook,
    description="Each station's mechanical logbook (plane z, trigger pairs by date).",
    cleanup_policy="compact",
    retention_ms=-1,
)
RATES_MINUTE = TopicSpec(
    "mingo.rates.minute.v1",
    key="station id",
    value_format="json",
    model=MinuteRates,
    description="Calibrated per-minute rates, efficiencies and charge per station.",
    retention_ms=-1,
)
CALIBRATION = TopicSpec(
    "mingo.calibration.v2",
    key="calibration version",
    value_format="json",
    model=Calibration,
    description=(
        "Each station calibration as a versioned record (written in the transaction of the "
        "first rates that use it); rates records name their calibration_version."
    ),
    partitions=1,
    cleanup_policy="compact",
    retention_ms=-1,
)
ERA5_HOURLY = TopicSpec(
    "mingo.era5.hourly.v1",
    key="station id",
    value_format="json",
    model=Era5Hour,
    description=(
        "ERA5 reanalysis fields interpolated at each station, hourly; per (station, time) "
        "the highest revision replaces earlier ones (final ERA5 over ERA5T)."
    ),
    retention_ms=-1,
)
UNIFIED_MINUTE = TopicSpec(
    "mingo.unified.minute.v1",
    key="station id",
    value_format="json",
    model=UnifiedMinute,
    description="The unified, corrected, flagged per-station-minute table (revised rows).",
    retention_ms=-1,
)
STATUS = TopicSpec(
    "mingo.status.v1",
    key="<service>/<station or ->",
    value_format="json",
    model=PipelineStatus,
    description="Heartbeats, per-file summaries and source errors of every service.",
    partitions=1,
    retention_ms=7 * DAY_MS,
)

COEFFICIENTS = TopicSpec(
    "mingo.coefficients.v1",
    key="station id",
    value_format="json",
    model=Coefficients,
    description="Versioned fitted atmospheric coefficients per station (mingo fit --write).",
    retention_ms=-1,
)
ALERTS = TopicSpec(
    "mingo.alerts.v1",
    key="station id, or 'network'",
    value_format="json",
    model=Alert,
    description="Anomalies per station and network (re-emitted while they evolve, same id).",
    retention_ms=365 * DAY_MS,
)

TOPICS: tuple[TopicSpec, ...] = (
    EVENTS_RAW,
    LOGS_RAW,
    REJECTS,
    INGEST_PROGRESS,
    LOGBOOK,
    RATES_MINUTE,
    CALIBRATION,
    ERA5_HOURLY,
    UNIFIED_MINUTE,
    STATUS,
    COEFFICIENTS,
    ALERTS,
)
TOPICS_BY_NAME = {spec.name: spec for spec in TOPICS}


def station_key(station: int) -> bytes:
    """Message key of station-keyed topics."""
    return str(station).encode()
