"""The sink service: unified minutes and pipeline status → InfluxDB and daily files.

Offsets are committed only after InfluxDB and the files accepted a batch. While InfluxDB (or
the disk) refuses, the consumer's partitions are paused and the same batch is retried with
exponential backoff; nothing is committed, so a stopped or killed sink re-reads the batch on
restart. Re-writing a row is harmless: the same series and timestamp overwrite in InfluxDB, and
the files keep the highest revision of each minute.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from pydantic import ValidationError

from schemas.models import PipelineStatus, UnifiedMinute
from schemas.topics import STATUS, UNIFIED_MINUTE
from services.common.kafka import make_consumer, make_producer
from services.common.runtime import RunBounds, StopFlag, run_loop
from services.common.settings import KafkaSettings
from services.common.status import status_key, status_message
from services.sink.files import DailyFiles
from services.sink.influx import InfluxTarget, InfluxV1Writer, InfluxWriteError, InfluxWriter
from services.sink.influx import make_writer as make_influx_writer
from services.sink.lineprotocol import encode_status, encode_unified

log = logging.getLogger(__name__)

SERVICE = "sink"


@dataclass(frozen=True)
class SinkOptions:
    """Tunables of the sink service."""

    instance: str
    group_id: str = "mingo-sink"
    unified_topic: str = UNIFIED_MINUTE.name
    status_topic: str = STATUS.name
    batch_max: int = 2000
    #: a poll waits this long unless batch_max messages come: the delay a trickle sees [s]
    poll_timeout_s: float = 0.2
    idle_interval_s: float = 0.5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    heartbeat_s: float = 30.0


@dataclass
class Batch:
    """Decoded messages of one poll and the offsets to commit once they are stored."""

    rows: list[Any] = field(default_factory=list)
    statuses: list[PipelineStatus] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    undecodable: int = 0

    def lines(self, now: datetime, instance: str) -> list[str]:
        """Line protocol of the rows, the statuses and the sink's freshness per station."""
        encoded = [encode_unified(r) for r in newest_revisions(self.rows)]
        encoded += [encode_status(s) for s in self.statuses]
        encoded += [encode_status(s) for s in freshness(self.rows, now, instance)]
        return [line for line in encoded if line is not None]


def newest_revisions(rows: Sequence[Any]) -> list[Any]:
    """One row per station-minute: the highest revision (on a tie the later one), in order."""
    best: dict[tuple[int, datetime], Any] = {}
    for row in rows:
        key = (row.station, row.time)
        if key not in best or row.revision >= best[key].revision:
            best[key] = row
    return list(best.values())


def freshness(rows: Sequence[Any], now: datetime, instance: str = "") -> list[PipelineStatus]:
    """Per station of the rows: newest unified minute and its lag (source ``unified``)."""
    newest: dict[int, datetime] = {}
    for row in rows:
        newest[row.station] = max(newest.get(row.station, row.time), row.time)
    return [
        PipelineStatus(
            service=SERVICE,
            instance=instance or SERVICE,
            kind="source_ok",
            time=now,
            station=station,
            source="unified",
            newest_data_time=time,
            lag_s=(now - time).total_seconds(),
        )
        for station, time in sorted(newest.items())
    ]


def decode(messages: Sequence[Message], unified_topic: str) -> Batch:
    """Validate messages into rows and statuses; undecodable ones are logged and skipped."""
    batch = Batch()
    for message in messages:
        error = message.error()
        if error is not None:
            log.warning("consumer error", extra={"error": str(error)})
            continue
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None
        batch.offsets[(topic, partition)] = max(
            batch.offsets.get((topic, partition), 0), offset + 1
        )
        try:
            value = message.value() or b""
            if topic == unified_topic:
                batch.rows.append(UnifiedMinute.model_validate_json(value))
            else:
                batch.statuses.append(PipelineStatus.model_validate_json(value))
        except ValidationError as exc:
            batch.undecodable += 1
            log.error(
                "undecodable message skipped",
                extra={"topic": topic, "partition": partition, "offset": offset, "error": str(exc)},
            )
    return batch


class SinkService:
    """Consume, store, commit; pause and retry while a store refuses.

    Parameters
    ----------
    consumer : Consumer
        Subscribed consumer with ``enable.auto.commit=false``.
    writer : InfluxWriter or None
        InfluxDB back end; None = the files only (the demo without InfluxDB).
    files : DailyFiles or None
        File store; None = InfluxDB only.
    options : SinkOptions
        Tunables.
    stop : StopFlag
        Stops the retries as well as the loop.
    producer : Producer or None
        For the sink's own status messages (heartbeats, InfluxDB errors).
    """

    def __init__(
        self,
        consumer: Consumer,
        writer: InfluxWriter | None,
        files: DailyFiles | None,
        options: SinkOptions,
        stop: StopFlag,
        producer: Producer | None = None,
    ) -> None:
        self.consumer = consumer
        self.writer = writer
        self.files = files
        self.options = options
        self.stop = stop
        self.producer = producer
        self.rows_written = 0
        self.statuses_written = 0

    def step(self) -> bool:
        """One batch: True if messages were stored and committed (or partitions are awaited)."""
        messages = self.consumer.consume(self.options.batch_max, self.options.poll_timeout_s)
        if not messages:
            # Not idle while the group has not assigned partitions yet: a run bounded by
            # stop_when_idle (``mingo sink --once``) must not end during the group join.
            return not self.consumer.assignment()
        batch = decode(messages, self.options.unified_topic)
        if not self._store(batch):
            return False  # stopped while retrying: nothing committed, the batch is re-read
        self._commit(batch.offsets)
        self.rows_written += len(batch.rows)
        self.statuses_written += len(batch.statuses)
        log.debug(
            "batch stored",
            extra={"rows": len(batch.rows), "statuses": len(batch.statuses)},
        )
        return True

    def _store(self, batch: Batch) -> bool:
        """Write the batch to InfluxDB then the files, retrying until both accept or a stop."""
        delay = self.options.backoff_initial_s
        paused: list[TopicPartition] = []
        failures = 0
        while True:
            try:
                if self.writer is not None:
                    self.writer.write(batch.lines(datetime.now(UTC), self.options.instance))
                if self.files is not None and batch.rows:
                    self.files.write(batch.rows)
                break
            except (InfluxWriteError, OSError) as exc:
                failures += 1
                log.warning(
                    "store refused the batch; retrying",
                    extra={"error": str(exc), "retry_in_s": delay, "failures": failures},
                )
                if failures == 1:
                    self._report_error("files" if isinstance(exc, OSError) else "influxdb", exc)
                    paused = self.consumer.assignment()
                    self.consumer.pause(paused)
            if self.stop.wait(delay):
                return False
            self._keep_membership()
            delay = min(delay * 2, self.options.backoff_max_s)
        if paused:
            self.consumer.resume(self.consumer.assignment())
            log.info("store accepts again", extra={"failures": failures})
        return True

    def _keep_membership(self) -> None:
        """Serve the group protocol while paused; a message still returned is fetched again."""
        message = self.consumer.poll(0)
        if message is not None and message.error() is None:
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert topic is not None and partition is not None and offset is not None
            self.consumer.seek(TopicPartition(topic, partition, offset))
        self.consumer.pause(self.consumer.assignment())

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        if not offsets:
            return
        partitions = [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
        try:
            self.consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as exc:
            # After a rebalance the partitions belong to another member, which re-reads and
            # re-writes the batch: idempotent, nothing lost.
            log.warning("commit failed; the batch will be re-read", extra={"error": str(exc)})

    def _report_error(self, store: str, error: Exception) -> None:
        self.publish_status("source_error", source=store, message=str(error))

    def publish_status(self, kind: str, **fields: Any) -> None:
        """Queue a status message of the sink on its status topic (heartbeats, errors)."""
        if self.producer is None:
            return
        status = status_message(SERVICE, self.options.instance, kind, **fields)
        self.producer.produce(
            self.options.status_topic, key=status_key(status), value=status.to_json_bytes()
        )
        self.producer.poll(0)


def make_writer(target: InfluxTarget, *, create_database: bool) -> InfluxWriter:
    """The InfluxDB back end; with ``create_database`` the v1 database is created if missing.

    An InfluxDB that is down at start is no reason to exit (a restarted service would otherwise
    crash until InfluxDB is back): the database is then created before the first write, which
    the service retries like any other refused write.
    """
    writer = make_influx_writer(target)
    if create_database and isinstance(writer, InfluxV1Writer):
        try:
            writer.ensure_database()
        except InfluxWriteError as exc:
            if not exc.retryable:
                raise
            log.warning(
                "InfluxDB unreachable at start; the database is created before the first write",
                extra={"error": str(exc)},
            )
            writer.create_database_before_write()
    return writer


def run_sink(
    kafka: KafkaSettings,
    writer: InfluxWriter | None,
    files: DailyFiles | None,
    options: SinkOptions,
    stop: StopFlag,
    bounds: RunBounds | None = None,
) -> SinkService:
    """Run the sink until stopped (or ``bounds``); closes the consumer but not the writer."""
    consumer = make_consumer(kafka, options.group_id)
    producer = make_producer(kafka)
    consumer.subscribe([options.unified_topic, options.status_topic])
    service = SinkService(consumer, writer, files, options, stop, producer)
    log.info(
        "sink started",
        extra={"topics": [options.unified_topic, options.status_topic], "group": options.group_id},
    )
    try:
        run_loop(
            service.step,
            stop=stop,
            interval_s=options.idle_interval_s,
            bounds=bounds,
            heartbeat=lambda: service.publish_status("heartbeat"),
            heartbeat_s=options.heartbeat_s,
        )
    finally:
        consumer.close()
        service.publish_status("stopped")
        producer.flush(10)
        log.info(
            "sink stopped",
            extra={"rows": service.rows_written, "statuses": service.statuses_written},
        )
    return service
