"""The reconstruct service: raw event chunks → minute records, exactly once (confluent-kafka).

A consume-transform-produce loop. The consumer (group ``mingo-reconstruct``, read_committed)
reads ``mingo.events.raw.v1``; each batch of chunks goes through the station's
:class:`~services.reconstruct.stream.StationStream`, and the minute records it yields
(``MinuteRates`` JSON, keyed by station, on ``mingo.rates.minute.v1``) are produced in ONE
transaction together with the calibrations they name (``mingo.calibration.v1``, keyed by
version, also written to the calibration directory) and the consumed offsets
(``send_offsets_to_transaction``). A killed instance therefore either published a batch with its
offsets or neither, and no published minute names a calibration that was not published.

State is not stored anywhere: it is derived from the raw topic. When a partition is assigned, its
stations' streams are rebuilt by replaying the partition from its first retained offset up to the
committed offset without producing anything; the streams are deterministic, so they end in exactly
the state the previous owner had after its last committed batch (pending chunks, file tallies of
shared minutes, calibration pool), and processing continues from the committed offset.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from schemas.events import envelope_from_headers
from schemas.models import MinuteRates, StationLogbook
from schemas.topics import CALIBRATION, EVENTS_RAW, LOGBOOK, RATES_MINUTE, station_key
from services.common.kafka import client_config, make_consumer, make_producer, read_all
from services.common.logbook import LogbookEntry, z_positions_at
from services.common.runtime import RunBounds, StopFlag, run_loop
from services.common.settings import KafkaSettings
from services.common.stations import Network, ReconstructionConfig
from services.common.status import Heartbeat
from services.reconstruct.calibration import Calibration
from services.reconstruct.calibration_records import to_record, write_calibration
from services.reconstruct.stream import StationStream, StreamOutput, chunk_from_message

log = logging.getLogger(__name__)

SERVICE = "reconstruct"
GROUP_ID = "mingo-reconstruct"

__all__ = [
    "GROUP_ID",
    "ReconstructOptions",
    "Reconstructor",
    "load_logbook",
    "open_reconstructor",
    "run_reconstruct",
]


@dataclass(frozen=True)
class ReconstructOptions:
    """Tunables of the reconstruct service."""

    instance: str
    calibration_dir: Path = Path("calibrations")  #: calibrations kept as <station>/<version>.json
    group_id: str = GROUP_ID  #: consumer group; instances of one group split the stations
    batch_messages: int = 64  #: chunks consumed (and committed) per transaction at most
    poll_timeout_s: float = 1.0  #: how long one step waits for chunks [s]
    heartbeat_s: float = 30.0


def transactional_id(instance: str) -> str:
    """Transactional id of an instance: stable across restarts of the same instance."""
    return f"mingo-reconstruct-{instance}"


def load_logbook(kafka: KafkaSettings) -> list[LogbookEntry]:
    """The logbook rows of every station, from the compacted logbook topic (latest per station)."""
    latest: dict[int, StationLogbook] = {}
    for message in read_all(kafka, LOGBOOK.name):
        if message.value() is not None:
            record = StationLogbook.model_validate_json(message.value())
            latest[record.station] = record
    return [
        LogbookEntry(r.station, p.conf, p.start, p.end, p.z_mm, p.trigger_pairs, r.source_file)
        for r in latest.values()
        for p in r.periods
    ]


class Reconstructor:
    """One instance's Kafka glue: streams per station, a transaction per batch of chunks.

    Parameters
    ----------
    kafka : KafkaSettings
        Cluster (the replay reader connects with it).
    network : Network
        Stations and their reconstruction settings (defaults for a station not in it).
    logbook : list of LogbookEntry
        Plane z positions by date; DOMAIN.md defaults where no row holds.
    options : ReconstructOptions
        Tunables.
    consumer : Consumer
        read_committed, no auto-commit; subscribed by :meth:`subscribe`.
    producer : Producer
        Transactional, transactions initialised.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        network: Network,
        logbook: list[LogbookEntry],
        options: ReconstructOptions,
        consumer: Consumer,
        producer: Producer,
    ) -> None:
        self.kafka = kafka
        self.network = network
        self.logbook = logbook
        self.options = options
        self.consumer = consumer
        self.producer = producer
        self.streams: dict[int, StationStream] = {}
        self._stations_of: defaultdict[int, set[int]] = defaultdict(set)
        self._assigned: set[int] = set()
        self._at_end: set[int] = set()
        self.records_out = 0
        self.calibrations_out = 0

    def subscribe(self) -> None:
        """Subscribe to the raw topic; assigned partitions get their state rebuilt."""
        self.consumer.subscribe(
            [EVENTS_RAW.name], on_assign=self._on_assign, on_revoke=self._on_revoke
        )

    # -- state ------------------------------------------------------------------------------
    def _config(self, station: int) -> ReconstructionConfig:
        try:
            return self.network.station(station).reconstruction
        except KeyError:
            return ReconstructionConfig()

    def _stream(self, station: int) -> StationStream:
        stream = self.streams.get(station)
        if stream is None:

            def z_of_time(time_s: int) -> tuple[float, float, float, float]:
                return z_positions_at(self.logbook, station, datetime.fromtimestamp(time_s, UTC))

            stream = StationStream(station, z_of_time, self._config(station))
            self.streams[station] = stream
        return stream

    def _feed(self, message: Message) -> StreamOutput:
        """One chunk into its station's stream; the records and calibration it completes."""
        try:
            envelope = envelope_from_headers(message.headers())
            chunk = chunk_from_message(envelope, message.value())
        except ValueError as exc:
            log.error(
                "undecodable chunk skipped",
                extra={"partition": message.partition(), "offset": message.offset(), "error": exc},
            )
            return StreamOutput([])
        self._stations_of[message.partition()].add(envelope.station)
        return self._stream(envelope.station).add(chunk)

    def _forget(self, partition: int) -> None:
        for station in self._stations_of.pop(partition, set()):
            self.streams.pop(station, None)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._forget(tp.partition)
            self._assigned.discard(tp.partition)
            self._at_end.discard(tp.partition)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in consumer.committed(partitions, timeout=30):
            self._forget(tp.partition)
            if tp.offset > 0:
                self._replay(tp.partition, tp.offset)
            self._assigned.add(tp.partition)
            self._at_end.discard(tp.partition)

    def _replay(self, partition: int, end: int) -> None:
        """Feed the partition's committed chunks before ``end`` to the streams; produce nothing."""
        reader = Consumer(
            client_config(self.kafka)
            | {
                "group.id": f"{self.options.group_id}-replay-unused",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            }
        )
        replayed = 0
        try:
            reader.assign([TopicPartition(EVENTS_RAW.name, partition, OFFSET_BEGINNING)])
            while True:
                message = reader.poll(1.0)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        break
                    raise KafkaException(error)
                if message.offset() >= end:
                    break
                self._feed(message)
                replayed += 1
        finally:
            reader.close()
        log.info(
            "partition state rebuilt from the raw topic",
            extra={"partition": partition, "chunks": replayed, "committed_offset": end},
        )

    # -- the loop ---------------------------------------------------------------------------
    def step(self) -> bool:
        """Consume a batch, publish its minute records with its offsets; False when idle."""
        messages = self.consumer.consume(self.options.batch_messages, self.options.poll_timeout_s)
        records: list[dict[str, Any]] = []
        calibrations: list[Calibration] = []
        # Next offset per partition, from the chunks themselves: the consumer's position can
        # stand past the end after a partition-EOF event.
        next_offsets: dict[int, int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._at_end.add(message.partition())
                    continue
                raise KafkaException(error)
            next_offsets[message.partition()] = message.offset() + 1
            self._at_end.discard(message.partition())
            output = self._feed(message)
            records += output.rows
            if output.calibration is not None:
                calibrations.append(output.calibration)
        if next_offsets:
            self._commit(records, calibrations, next_offsets)
        idle = bool(self._assigned) and self._at_end >= self._assigned
        return bool(next_offsets) or not idle

    def _commit(
        self,
        records: list[dict[str, Any]],
        calibrations: list[Calibration],
        next_offsets: dict[int, int],
    ) -> None:
        positions = [TopicPartition(EVENTS_RAW.name, p, o) for p, o in next_offsets.items()]
        self.producer.begin_transaction()
        try:
            for calibration in calibrations:
                # On disk before the commit: a version on the topic is always on disk too (an
                # aborted batch leaves a file that its retry rewrites with the same bytes).
                record = to_record(calibration)
                write_calibration(self.options.calibration_dir, record)
                self._produce(CALIBRATION.name, record.version.encode(), record.to_json_bytes())
            for row in records:
                value = MinuteRates(**row).to_json_bytes()
                self._produce(RATES_MINUTE.name, station_key(int(row["station"])), value)
            self.producer.send_offsets_to_transaction(
                positions, self.consumer.consumer_group_metadata(), 60
            )
            self.producer.commit_transaction(60)
        except BaseException:
            self.producer.abort_transaction(60)
            raise
        self.records_out += len(records)
        self.calibrations_out += len(calibrations)

    def close(self) -> None:
        """Leave the group and flush the producer."""
        self.consumer.close()
        self.producer.flush(10)

    def _produce(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key)
                return
            except BufferError:
                self.producer.poll(0.1)  # local queue full: let deliveries drain


def open_reconstructor(
    network: Network, kafka: KafkaSettings, options: ReconstructOptions
) -> Reconstructor:
    """An instance with its clients: the logbook read, transactions initialised, not subscribed."""
    logbook = load_logbook(kafka)
    producer = make_producer(kafka, transactional_id=transactional_id(options.instance))
    producer.init_transactions(60)  # fences a previous incarnation and aborts its transaction
    consumer = make_consumer(kafka, options.group_id, **{"enable.partition.eof": True})
    return Reconstructor(kafka, network, logbook, options, consumer, producer)


def run_reconstruct(
    network: Network,
    kafka: KafkaSettings,
    options: ReconstructOptions,
    stop: StopFlag,
    bounds: RunBounds | None = None,
) -> int:
    """Run the service until stopped (or the bounds end it); returns minute records published."""
    service = open_reconstructor(network, kafka, options)
    heartbeat = Heartbeat(make_producer(kafka), SERVICE, options.instance)
    log.info("reconstruct starting", extra={"logbook_rows": len(service.logbook)})
    service.subscribe()
    try:
        run_loop(
            service.step,
            stop=stop,
            interval_s=options.poll_timeout_s,
            bounds=bounds,
            heartbeat=lambda: heartbeat.beat(f"{service.records_out} minute records published"),
            heartbeat_s=options.heartbeat_s,
        )
    finally:
        service.close()
        heartbeat.stopped(f"reconstruct stopped after {service.records_out} minute records")
    return service.records_out
