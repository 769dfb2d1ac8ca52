"""The unify service: rates, logs and ERA5 joined per station-minute, exactly once (Quix Streams).

One Quix Streams application consumes the three input topics and ``mingo.coefficients.v1`` (the
records of ``mingo fit --write --publish``), all keyed by station id and co-partitioned
(``schemas.topics.STATION_PARTITIONS``), as one StreamingDataFrame (``concat``). A station's
coefficients record therefore reaches the task holding its state; a newer one recorrects the
station's retained minutes (revision + 1 where a row changes).
A stateful step gives each record to its station's :class:`~services.unify.stream.StationState`,
whose buckets live in the station's key of the Quix state store (RocksDB, backed by a changelog
topic); the state notes which minutes the record changes. Just before each checkpoint commits
(every ``commit_interval_s``), every station with new records recomputes those minutes once, and
the rows that changed are produced, as ``UnifiedMinute`` JSON keyed by station, to
``mingo.unified.minute.v1``. A minute is thus emitted at most once per checkpoint, however many
log readings around it the checkpoint brought.

With ``processing_guarantee="exactly-once"`` the produced rows, the changelog writes and the
consumed offsets of a checkpoint are committed in one Kafka transaction. The transactional id is
``mingo-unify-<instance>``, so a restarted instance fences its killed predecessor and aborts its
open transaction; it then restores the state from the changelog and resumes at the committed
offsets. Its final rows are those a run without the kill ends with, and every minute's
revisions still run 0, 1, 2, ... once each; how many intermediate revisions a minute gets
depends on where the checkpoints fall.
"""

from __future__ import annotations

import functools
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from quixstreams import message_context
from quixstreams.dataframe import StreamingDataFrame

from schemas.models import Coefficients, Era5Hour, LogReading, MinuteRates
from schemas.topics import (
    COEFFICIENTS,
    ERA5_HOURLY,
    LOGS_RAW,
    RATES_MINUTE,
    STATUS,
    UNIFIED_MINUTE,
)
from services.common.coefficients import latest_record
from services.common.kafka import make_producer
from services.common.quix import QuietApplication, exactly_once_application, run_application
from services.common.runtime import RunBounds, StopFlag
from services.common.settings import KafkaSettings
from services.common.stations import Network, Station
from services.common.status import Heartbeat
from services.unify.join import JoinSettings
from services.unify.stream import DAY_S, KeyValueState, StationState, StreamSettings

log = logging.getLogger(__name__)

SERVICE = "unify"
GROUP_ID = "mingo-unify"

__all__ = ["GROUP_ID", "INPUTS", "Unifier", "UnifyOptions", "build_application", "run_unify"]

#: Input topic -> the contract of its records.
INPUTS: dict[str, type[BaseModel]] = {
    RATES_MINUTE.name: MinuteRates,
    LOGS_RAW.name: LogReading,
    ERA5_HOURLY.name: Era5Hour,
    COEFFICIENTS.name: Coefficients,
}


@dataclass(frozen=True)
class UnifyOptions:
    """Tunables of the unify service."""

    instance: str
    group_id: str = GROUP_ID  #: consumer group; instances of one group split the stations
    retention_days: float = 100.0  #: state kept per station, back from its newest data [d]
    log_max_gap_s: float = 1800.0  #: largest gap between two log readings interpolated over [s]
    era5_max_gap_s: float = 3600.0  #: largest gap between two ERA5 hours interpolated over [s]
    heartbeat_s: float = 30.0
    state_dir: Path | None = None  #: local RocksDB folder; None = <tmp>/mingo-unify/<instance>
    commit_interval_s: float = 0.5  #: how often a checkpoint (transaction) is committed [s]
    #: records per checkpoint at most (bounds a transaction while catching up)
    batch_records: int = 2000
    idle_timeout_s: float = 5.0  #: with RunBounds.stop_when_idle: stop after this long idle [s]
    #: ``mingo fit --write`` records: a station's newest replaces its configured β (and α_T),
    #: as ``mingo process --coefficients`` does; read once per station per run. Records on
    #: mingo.coefficients.v1 replace it when their version is higher.
    coefficients_dir: Path | None = None

    def join(self) -> JoinSettings:
        """The join settings (the same as ``mingo process`` takes)."""
        return JoinSettings(log_max_gap_s=self.log_max_gap_s, era5_max_gap_s=self.era5_max_gap_s)

    def local_state_dir(self) -> Path:
        """Where this instance keeps its RocksDB state."""
        return self.state_dir or Path(tempfile.gettempdir()) / "mingo-unify" / self.instance


def transactional_id(instance: str) -> str:
    """Transactional id of an instance: stable across restarts, so a restart fences a zombie."""
    return f"mingo-unify-{instance}"


class Unifier:
    """The stateful step: records in; the changed rows (JSON bytes) out once per checkpoint.

    Parameters
    ----------
    network : Network
        Stations and their correction coefficients (defaults for a station not in it).
    options : UnifyOptions
        Gaps and retention.
    """

    def __init__(self, network: Network, options: UnifyOptions) -> None:
        self.network = network
        self.options = options
        self.records_in = 0
        self.rows_out = 0
        self.skipped = 0
        self._settings: dict[int, StreamSettings] = {}
        #: station key -> its state in the open checkpoint, for the stations with new records
        self._open: dict[str, StationState] = {}

    def settings(self, station: int) -> StreamSettings:
        """Coefficients, gaps and retention of a station."""
        settings = self._settings.get(station)
        if settings is None:
            try:
                configured = self.network.station(station)
            except KeyError:
                configured = Station(id=station, name=f"mingo0{station}")
                log.warning(
                    "station not in the network: default coefficients", extra={"station": station}
                )
            settings = StreamSettings(
                configured.atmosphere, self.options.join(), self.options.retention_days * DAY_S
            )
            folder = self.options.coefficients_dir
            record = latest_record(folder, station) if folder else None
            if record is not None:
                settings = settings.with_record(record)
                log.info(
                    "coefficients record applied",
                    extra={"station": station, "version": record.version},
                )
            self._settings[station] = settings
        return settings

    def process(self, tagged: tuple[str, bytes | None], key: Any, state: KeyValueState) -> None:
        """A record (``tagged``: input topic, value bytes) of station ``key``, into its state.

        ``state`` is the station's store in the open checkpoint; it is used until
        :meth:`flush`, which must run before that checkpoint commits.
        """
        topic, value = tagged
        try:
            record: Any = INPUTS[topic].model_validate_json(value or b"")
        except ValidationError as exc:
            self._skip("undecodable record skipped", str(exc))
            return
        if str(record.station) != str(key):
            self._skip("record under another station's key skipped", f"key {key!r}")
            return
        station = self._open.get(str(key))
        if station is None:
            station = StationState(state, self.settings(record.station))
            self._open[str(key)] = station
        station.put(record)
        if isinstance(record, Coefficients):
            log.info(
                "coefficients record received",
                extra={"station": record.station, "version": record.version},
            )
        self.records_in += 1

    def flush(self) -> dict[str, list[bytes]]:
        """Station key -> the rows the records since the last flush changed (JSON bytes)."""
        out = {}
        for key, station in self._open.items():
            rows = station.flush()
            self.rows_out += len(rows)
            out[key] = [row.to_json_bytes() for row in rows]
        self._open.clear()
        return out

    def _skip(self, what: str, error: str) -> None:
        self.skipped += 1
        context = message_context()
        log.error(
            what,
            extra={
                "topic": context.topic,
                "partition": context.partition,
                "offset": context.offset,
                "error": error,
            },
        )


def _tag(topic: str, value: bytes | None) -> tuple[str, bytes | None]:
    return topic, value


def build_application(
    kafka: KafkaSettings, options: UnifyOptions, unifier: Unifier
) -> QuietApplication:
    """The Quix application: the inputs concatenated, the stateful step, the output."""
    app = exactly_once_application(
        kafka,
        [RATES_MINUTE, LOGS_RAW, ERA5_HOURLY, COEFFICIENTS, UNIFIED_MINUTE, STATUS],
        options.group_id,
        transactional_id(options.instance),
        options.commit_interval_s,
        options.local_state_dir(),
        commit_every=options.batch_records,
    )
    frame: StreamingDataFrame | None = None
    for name in INPUTS:
        topic = app.topic(name, key_deserializer="str", value_deserializer="bytes")
        part = app.dataframe(topic).apply(functools.partial(_tag, name))
        frame = part if frame is None else frame.concat(part)
    assert frame is not None

    def step(value: Any, key: Any, _timestamp: int, _headers: Any, state: Any) -> None:
        unifier.process(value, key, state)

    def produce_rows() -> None:
        for key, rows in unifier.flush().items():
            for row in rows:
                app.produce(UNIFIED_MINUTE.name, key.encode(), row)

    frame.update(step, stateful=True, metadata=True)
    app.before_commit(produce_rows)
    return app


def run_unify(
    network: Network,
    kafka: KafkaSettings,
    options: UnifyOptions,
    stop: StopFlag,
    bounds: RunBounds = RunBounds(),  # noqa: B008 - frozen dataclass, never mutated
) -> int:
    """Run the service until stopped (or the bounds end it); returns the rows published."""
    unifier = Unifier(network, options)
    app = build_application(kafka, options, unifier)
    heartbeat = Heartbeat(make_producer(kafka), SERVICE, options.instance)
    log.info("unify starting", extra={"group": options.group_id, "instance": options.instance})
    try:
        run_application(
            app,
            stop,
            bounds,
            options.idle_timeout_s,
            lambda: unifier.records_in,
            lambda: heartbeat.beat(f"{unifier.rows_out} rows published"),
            options.heartbeat_s,
        )
    finally:
        heartbeat.stopped(
            f"unify stopped after {unifier.records_in} records in, {unifier.rows_out} rows out"
        )
    return unifier.rows_out
