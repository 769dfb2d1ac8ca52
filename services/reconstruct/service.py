"""The reconstruct service: raw event chunks → minute records, exactly once (Quix Streams).

One Quix Streams application consumes ``mingo.events.raw.v2`` (keyed by station). A stateful
step gives each chunk to its station's :class:`~services.reconstruct.state.StoredStation`, whose
stream (held chunks, calibration pool, file covers, minute sums) lives in the station's keys of
the Quix state store (RocksDB, backed by a changelog topic). The minute records a chunk touched
go, as ``MinuteRates`` JSON keyed by station, to ``mingo.rates.minute.v1``; the calibrations
they were made with go, keyed by version, to the compacted ``mingo.calibration.v2`` and
(before the checkpoint commits) to the calibration directory.

With ``processing_guarantee="exactly-once"`` the produced records, the changelog writes and the
consumed offsets of a checkpoint are committed in one Kafka transaction. The transactional id is
``mingo-reconstruct-<instance>``, so a restarted instance fences its killed predecessor and
aborts its open transaction; it restores the state from the changelog and resumes at the
committed offsets. Instances of one consumer group split the partitions, hence the stations.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quixstreams import message_context
from quixstreams.state.rocksdb import RocksDBOptions

from schemas.models import MinuteRates, StationLogbook
from schemas.topics import CALIBRATION, EVENTS_RAW, LOGBOOK, MAX_MESSAGE_BYTES, RATES_MINUTE, STATUS
from services.common.kafka import make_producer, read_all
from services.common.logbook import LogbookEntry, z_positions_at
from services.common.quix import QuietApplication, exactly_once_application, run_application
from services.common.runtime import RunBounds, StopFlag
from services.common.settings import KafkaSettings
from services.common.stations import Network, ReconstructionConfig
from services.common.status import Heartbeat
from services.reconstruct.calibration_records import to_record, write_calibration
from services.reconstruct.state import StoredStation

log = logging.getLogger(__name__)

SERVICE = "reconstruct"
GROUP_ID = "mingo-reconstruct"
_RATES, _CALIBRATION = "rates", "calibration"

__all__ = [
    "GROUP_ID",
    "ReconstructOptions",
    "Reconstructor",
    "build_application",
    "load_logbook",
    "run_reconstruct",
]


@dataclass(frozen=True)
class ReconstructOptions:
    """Tunables of the reconstruct service."""

    instance: str
    calibration_dir: Path = Path("calibrations")  #: calibrations kept as <station>/<version>.json
    group_id: str = GROUP_ID  #: consumer group; instances of one group split the stations
    batch_messages: int = 64  #: chunks per checkpoint (transaction) at most
    commit_interval_s: float = 0.5  #: a checkpoint at least this often [s]
    idle_timeout_s: float = 5.0  #: with RunBounds.stop_when_idle: stop after this long idle [s]
    heartbeat_s: float = 30.0
    state_dir: Path | None = (
        None  #: local RocksDB folder; None = <tmp>/mingo-reconstruct/<instance>
    )

    def local_state_dir(self) -> Path:
        """Where this instance keeps its RocksDB state."""
        return self.state_dir or Path(tempfile.gettempdir()) / "mingo-reconstruct" / self.instance


def transactional_id(instance: str) -> str:
    """Transactional id of an instance: stable across restarts, so a restart fences a zombie."""
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
    """The stateful step: one raw chunk in, (output, JSON bytes) items out.

    Parameters
    ----------
    network : Network
        Stations and their reconstruction settings (defaults for a station not in it).
    logbook : list of LogbookEntry
        Plane z positions by date; DOMAIN.md defaults where no row holds.
    options : ReconstructOptions
        Tunables (the calibration directory).
    """

    def __init__(
        self, network: Network, logbook: list[LogbookEntry], options: ReconstructOptions
    ) -> None:
        self.network = network
        self.logbook = logbook
        self.options = options
        self.stations: dict[int, StoredStation] = {}
        self.chunks_in = 0
        self.records_out = 0
        self.calibrations_out = 0
        #: station → partition of its last chunk (which instance holds which station)
        self.partitions: dict[int, int] = {}

    def _config(self, station: int) -> ReconstructionConfig:
        try:
            return self.network.station(station).reconstruction
        except KeyError:
            return ReconstructionConfig()

    def _station(self, station: int) -> StoredStation:
        stored = self.stations.get(station)
        if stored is None:

            def z_of_time(time_s: int) -> tuple[float, float, float, float]:
                return z_positions_at(self.logbook, station, datetime.fromtimestamp(time_s, UTC))

            stored = StoredStation(station, z_of_time, self._config(station))
            self.stations[station] = stored
        return stored

    def process(
        self, value: bytes, key: bytes, headers: Any, state: Any
    ) -> list[tuple[str, bytes]]:
        """A raw chunk of station ``key``; the records and calibrations to produce."""
        try:
            station = int(key)
            output = self._station(station).add(state, headers, value)
        except ValueError as exc:
            context = message_context()
            log.error(
                "chunk skipped: it cannot be decoded or reconstructed",
                extra={"partition": context.partition, "offset": context.offset, "error": exc},
            )
            return []
        self.chunks_in += 1
        self.partitions[station] = message_context().partition
        items: list[tuple[str, bytes]] = []
        for calibration in output.calibrations:
            # on disk before the checkpoint: a version on the topic is always on disk too
            record = to_record(calibration)
            write_calibration(self.options.calibration_dir, record)
            items.append((_CALIBRATION, record.to_json_bytes()))
            self.calibrations_out += 1
        items += [(_RATES, MinuteRates(**row).to_json_bytes()) for row in output.rows]
        self.records_out += len(output.rows)
        return items


def _same(value: bytes) -> bytes:
    return value


def build_application(
    kafka: KafkaSettings, options: ReconstructOptions, worker: Reconstructor
) -> QuietApplication:
    """The Quix application: raw chunks, the stateful step, the two outputs."""
    app = exactly_once_application(
        kafka,
        [EVENTS_RAW, RATES_MINUTE, CALIBRATION, STATUS],
        options.group_id,
        transactional_id(options.instance),
        options.commit_interval_s,
        options.local_state_dir(),
        # Quix makes its own producer: the same limit as the project's producers
        producer_config={"message.max.bytes": MAX_MESSAGE_BYTES},
        commit_every=options.batch_messages,
        # values are bytes the service encodes itself (.npy, JSON; never pickles)
        rocksdb_options=RocksDBOptions(dumps=_same, loads=_same),
    )
    raw = app.topic(EVENTS_RAW.name, key_deserializer="bytes", value_deserializer="bytes")
    rates = app.topic(RATES_MINUTE.name, key_serializer="bytes", value_serializer="bytes")
    calibrations = app.topic(CALIBRATION.name, key_serializer="bytes", value_serializer="bytes")

    def step(value: Any, key: Any, _timestamp: int, headers: Any, state: Any) -> list[Any]:
        return worker.process(value, key, headers, state)

    items = app.dataframe(raw).apply(step, stateful=True, expand=True, metadata=True)
    records = items[items.apply(lambda item: item[0] == _RATES)].apply(lambda item: item[1])
    records.to_topic(rates)
    made = items[items.apply(lambda item: item[0] == _CALIBRATION)].apply(lambda item: item[1])
    made.to_topic(calibrations, key=lambda value: json.loads(value)["version"].encode())
    return app


def run_reconstruct(
    network: Network,
    kafka: KafkaSettings,
    options: ReconstructOptions,
    stop: StopFlag,
    bounds: RunBounds = RunBounds(),  # noqa: B008 - frozen dataclass, never mutated
    worker: Reconstructor | None = None,
) -> int:
    """Run the service until stopped (or the bounds end it); returns minute records published."""
    worker = worker or Reconstructor(network, load_logbook(kafka), options)
    app = build_application(kafka, options, worker)
    heartbeat = Heartbeat(make_producer(kafka), SERVICE, options.instance)
    log.info("reconstruct starting", extra={"logbook_rows": len(worker.logbook)})
    try:
        run_application(
            app,
            stop,
            bounds,
            options.idle_timeout_s,
            lambda: worker.chunks_in,
            lambda: heartbeat.beat(f"{worker.records_out} minute records published"),
            options.heartbeat_s,
        )
    finally:
        heartbeat.stopped(f"reconstruct stopped after {worker.records_out} minute records")
    return worker.records_out
