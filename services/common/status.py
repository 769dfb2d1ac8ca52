"""Pipeline-status messages: heartbeats, per-file summaries, source errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer

from schemas.models import PipelineStatus
from schemas.topics import STATUS


def status_message(service: str, instance: str, kind: str, **fields: Any) -> PipelineStatus:
    """A status record stamped now."""
    return PipelineStatus(
        service=service, instance=instance, kind=kind, time=datetime.now(UTC), **fields
    )


def produce_status(producer: Producer, status: PipelineStatus) -> None:
    """Queue a status record on the status topic (keyed by service and station)."""
    station = "-" if status.station is None else str(status.station)
    producer.produce(
        STATUS.name, key=f"{status.service}/{station}".encode(), value=status.to_json_bytes()
    )
