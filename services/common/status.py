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


def status_key(status: PipelineStatus) -> bytes:
    """Key of a status record: ``<service>/<station or ->``."""
    station = "-" if status.station is None else str(status.station)
    return f"{status.service}/{station}".encode()


def produce_status(producer: Producer, status: PipelineStatus) -> None:
    """Queue a status record on the status topic."""
    producer.produce(STATUS.name, key=status_key(status), value=status.to_json_bytes())


class Heartbeat:
    """Periodic liveness messages of a service instance, and its last word when it stops."""

    def __init__(self, producer: Producer, service: str, instance: str) -> None:
        self.producer = producer
        self.service = service
        self.instance = instance

    def beat(self, message: str = "") -> None:
        """Send one heartbeat now."""
        produce_status(
            self.producer, status_message(self.service, self.instance, "heartbeat", message=message)
        )
        self.producer.poll(0)

    def stopped(self, message: str = "") -> None:
        """Say the instance stopped and flush."""
        produce_status(
            self.producer, status_message(self.service, self.instance, "stopped", message=message)
        )
        self.producer.flush(10)
