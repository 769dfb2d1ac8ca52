"""Turning parse results into topic messages: pure functions, no Kafka.

Each function returns ``Outgoing`` messages (topic, key, value, headers); the service produces them
inside one transaction together with the file's progress record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from schemas.events import encode_events, envelope_headers
from schemas.models import IngestProgress, LogReading
from schemas.station_logs import LogType
from schemas.topics import EVENTS_RAW, INGEST_PROGRESS, LOGS_RAW, REJECTS, station_key
from services.common.rejects import LineReject, reject_records
from services.ingest.chunking import chunk_envelopes, plan_chunks
from services.ingest.dat_parser import DatParseResult
from services.ingest.log_parser import LogParseResult


@dataclass(frozen=True)
class Outgoing:
    """One message to produce."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] | None = None


def progress_key(station: int, kind: str, file: str) -> str:
    """Key of a file's record on the progress topic."""
    return f"{station}/{kind}/{file}"


def progress_message(progress: IngestProgress) -> Outgoing:
    """The progress record of a file as a message of the compacted progress topic."""
    key = progress_key(progress.station, progress.kind, progress.file)
    return Outgoing(INGEST_PROGRESS.name, key.encode(), progress.to_json_bytes())


def reject_messages(
    station: int,
    kind: str,
    source_file: str,
    rejects: tuple[LineReject, ...] | list[LineReject],
    archive: str | None = None,
) -> list[Outgoing]:
    """Reject records of a file's bad lines (or of the whole file)."""
    return [
        Outgoing(REJECTS.name, station_key(station), record.to_json_bytes())
        for record in reject_records(station, kind, source_file, rejects, archive)
    ]


def event_chunk_messages(
    station: int,
    source_file: str,
    file_start_s: int,
    result: DatParseResult,
    max_events: int,
    archive: str | None = None,
) -> list[Outgoing]:
    """Raw-event chunk messages of one parsed ``.dat`` file (none for a file without events)."""
    if len(result.time_s) == 0:
        return []
    slices = plan_chunks(result.time_s, result.trigger_type, max_events)
    envelopes = chunk_envelopes(station, source_file, file_start_s, result.time_s, slices, archive)
    messages = []
    for chunk, envelope in zip(slices, envelopes, strict=True):
        rows = chunk.rows
        payload = encode_events(
            result.time_s[rows],
            result.line_number[rows],
            np.ascontiguousarray(result.channels[rows]),
        )
        messages.append(
            Outgoing(EVENTS_RAW.name, station_key(station), payload, envelope_headers(envelope))
        )
    return messages


def log_reading_messages(
    station: int, log_type: LogType, source_file: str, result: LogParseResult
) -> list[Outgoing]:
    """Log-reading messages of the parsed lines of a log file."""
    units = {column.name: column.unit for column in log_type.columns}
    messages = []
    for row in result.rows:
        reading = LogReading(
            station=station,
            source=log_type.source,
            time=row.time,
            values=row.values,
            units=units,
            out_of_range=list(row.out_of_range),
            source_file=source_file,
            line=row.line,
            reading_id=f"{station}/{source_file}/{row.line}",
        )
        messages.append(Outgoing(LOGS_RAW.name, station_key(station), reading.to_json_bytes()))
    return messages


def utc(seconds: float | None) -> datetime | None:
    """Aware UTC datetime of epoch seconds (None stays None)."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)
