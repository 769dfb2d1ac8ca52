"""The operator's view of the pipeline, built from the status topic: pure functions.

For every station and source: the newest data time, its lag, the lines ingested and rejected, the
last error; for every service instance: when it was last heard of and whether it stopped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from schemas.models import PipelineStatus


@dataclass
class SourceHealth:
    """What the status topic says about one station's source (dat, a log family, ...)."""

    station: int
    source: str
    newest_data_time: datetime | None = None
    files: int = 0
    lines_valid: int = 0
    lines_rejected: int = 0
    last_error: str | None = None
    last_error_time: datetime | None = None

    def lag_s(self, now: datetime) -> float | None:
        """Seconds between now and the newest data. [s]"""
        return (
            None if self.newest_data_time is None else (now - self.newest_data_time).total_seconds()
        )


@dataclass
class ServiceHealth:
    """The last word of one service instance."""

    service: str
    instance: str
    last_seen: datetime
    stopped: bool = False
    message: str = ""


@dataclass
class PipelineHealth:
    """Sources by (station, source) and service instances by (service, instance)."""

    sources: dict[tuple[int, str], SourceHealth] = field(default_factory=dict)
    services: dict[tuple[str, str], ServiceHealth] = field(default_factory=dict)


def summarise_status(records: Iterable[PipelineStatus]) -> PipelineHealth:
    """Fold status records (in topic order) into the current health of the pipeline."""
    health = PipelineHealth()
    for record in records:
        key = (record.service, record.instance)
        health.services[key] = ServiceHealth(
            record.service, record.instance, record.time, record.kind == "stopped", record.message
        )
        if record.station is None:
            continue
        if record.kind == "source_error":
            source = _source(health, record.station, record.source or "station")
            source.last_error, source.last_error_time = record.message, record.time
        elif record.kind == "source_ok":
            _source(health, record.station, record.source or "station").last_error = None
        elif record.kind == "file_summary" and record.source:
            source = _source(health, record.station, record.source)
            source.files += 1
            source.lines_valid += record.lines_valid or 0
            source.lines_rejected += record.lines_rejected or 0
            newest = record.newest_data_time
            if newest and (source.newest_data_time is None or newest > source.newest_data_time):
                source.newest_data_time = newest
    return health


def _source(health: PipelineHealth, station: int, name: str) -> SourceHealth:
    return health.sources.setdefault((station, name), SourceHealth(station, name))


def render_health(health: PipelineHealth, now: datetime) -> list[str]:
    """Plain-text table lines of a health summary."""
    lines = [
        f"{'station':>7}  {'source':14} {'newest data (UTC)':20} {'lag':>9} {'files':>6} "
        f"{'valid':>10} {'rejected':>8}  last error"
    ]
    for (station, name), source in sorted(health.sources.items()):
        newest = source.newest_data_time
        lag = source.lag_s(now)
        lines.append(
            f"{station:>7}  {name:14} {newest:%Y-%m-%d %H:%M:%S}  {_duration(lag):>9} "
            if newest and lag is not None
            else f"{station:>7}  {name:14} {'-':20} {'-':>9} "
        )
        lines[-1] += (
            f"{source.files:>6} {source.lines_valid:>10} {source.lines_rejected:>8}  "
            f"{source.last_error or ''}"
        )
    lines.append("")
    lines.append(f"{'service':12} {'instance':24} {'last seen':>10}  state")
    for (service, instance), seen in sorted(health.services.items()):
        age = (now - seen.last_seen).total_seconds()
        state = "stopped" if seen.stopped else "running"
        lines.append(f"{service:12} {instance:24} {_duration(age) + ' ago':>10}  {state}")
    return lines


def _duration(seconds: float) -> str:
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
