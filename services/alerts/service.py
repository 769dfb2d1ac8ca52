"""The alerts service: unified minutes → detectors → ``mingo.alerts.v1`` and InfluxDB annotations.

Per station it keeps the last ``buffer_h`` hours of minutes (the detectors' baselines need 24 h
plus the rate window). After each batch it runs the station detectors on the stations the batch
touched and the network detector on all, and emits every alert that is new or changed (same id,
its end changed): produced to the alerts topic (key: station id or ``network``) and
written to InfluxDB, then the consumer offsets are committed. On (re)assignment the consumer
rewinds to ``buffer_h`` before now by message timestamp, so the buffer is rebuilt after a restart;
re-emitted alerts are identical (same id and point), which is harmless.

``now``: the newest minute seen at any station, or the wall clock when ``wall_clock`` is set
(production), so that a station that stops sending raises ``data_stopped``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from pydantic import ValidationError

from schemas.models import Alert, UnifiedMinute
from schemas.topics import ALERTS, UNIFIED_MINUTE
from services.alerts.annotations import encode_alert
from services.alerts.detectors import (
    DETECTOR_COLUMNS,
    AlertSettings,
    detect_forbush,
    detect_station,
)
from services.common.kafka import make_consumer, make_producer
from services.common.runtime import RunBounds, StopFlag, run_loop
from services.common.settings import KafkaSettings
from services.common.stations import AlertThresholds
from services.sink.influx import InfluxWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertsOptions:
    """Tunables of the alerts service."""

    group_id: str = "mingo-alerts"
    unified_topic: str = UNIFIED_MINUTE.name
    alerts_topic: str = ALERTS.name
    buffer_h: float = 30.0
    batch_max: int = 5000
    poll_timeout_s: float = 1.0
    wall_clock: bool = True
    detectors: AlertSettings = field(default_factory=AlertSettings)
    #: per-station bands and flow alarm (``config/stations.yaml``); others get ``detectors``'
    thresholds: Mapping[int, AlertThresholds] = field(default_factory=dict)

    def detectors_for(self, station: int) -> AlertSettings:
        """The detector settings of one station."""
        configured = self.thresholds.get(station)
        return self.detectors if configured is None else self.detectors.for_station(configured)


def alert_key(alert: Alert) -> bytes:
    """Message key: the station id, or ``network``."""
    return ("network" if alert.station is None else str(alert.station)).encode()


class AlertsState:
    """Minute buffers per station and the alerts already emitted (pure, no Kafka)."""

    def __init__(self, options: AlertsOptions) -> None:
        self.options = options
        self.buffers: dict[int, pd.DataFrame] = {}
        self.emitted: dict[str, Alert] = {}

    def add(self, rows: Sequence[UnifiedMinute]) -> set[int]:
        """Put rows into the buffers (highest revision per minute wins); the stations touched."""
        by_station: dict[int, list[dict[str, object]]] = {}
        for row in rows:
            record: dict[str, object] = {"time": row.time, "revision": row.revision}  # type: ignore[attr-defined]
            record |= {c: getattr(row, c) for c in DETECTOR_COLUMNS}
            by_station.setdefault(row.station, []).append(record)  # type: ignore[attr-defined]
        for station, records in by_station.items():
            new = pd.DataFrame.from_records(records)
            new["time"] = pd.to_datetime(new["time"], utc=True)
            old = self.buffers.get(station)
            frame = new if old is None else pd.concat([old, new], ignore_index=True)
            frame = frame.sort_values(["time", "revision"], kind="stable")
            frame = frame.drop_duplicates("time", keep="last")
            newest = frame["time"].iloc[-1]
            keep = frame["time"] > newest - pd.Timedelta(hours=self.options.buffer_h)
            self.buffers[station] = frame[keep].reset_index(drop=True)
        return set(by_station)

    def now(self) -> pd.Timestamp | None:
        """The detectors' present: newest minute anywhere, or the wall clock if later."""
        times = [b["time"].iloc[-1] + pd.Timedelta(minutes=1) for b in self.buffers.values()]
        newest = max(times) if times else None
        if self.options.wall_clock:
            clock = pd.Timestamp.now(tz="UTC")
            return clock if newest is None else max(newest, clock)
        return newest

    def evaluate(self, stations: set[int]) -> list[Alert]:
        """Run the detectors; the alerts that are new or changed since last emitted."""
        now = self.now()
        found: list[Alert] = []
        for station in sorted(self.buffers if self.options.wall_clock else stations):
            frame = self.buffers[station].drop(columns=["revision"])
            found += detect_station(station, frame, self.options.detectors_for(station), now)
        frames = {s: b.drop(columns=["revision"]) for s, b in self.buffers.items()}
        found += detect_forbush(frames, self.options.detectors)
        # re-emitted when its end changes (an ongoing alert's growing evidence is not news)
        changed = [
            a
            for a in found
            if a.alert_id not in self.emitted or self.emitted[a.alert_id].end != a.end
        ]
        for alert in changed:
            self.emitted[alert.alert_id] = alert
        return changed


class AlertsService:
    """Consume unified minutes, detect, produce alerts and annotations, commit."""

    def __init__(
        self,
        consumer: Consumer,
        producer: Producer,
        writer: InfluxWriter,
        options: AlertsOptions,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.writer = writer
        self.options = options
        self.state = AlertsState(options)
        self.alerts_emitted = 0
        self._last_idle_check = float("-inf")

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Rewind to ``buffer_h`` before now (by message timestamp) to rebuild the buffers."""
        since_ms = int((time.time() - 3600 * self.options.buffer_h) * 1000)
        wanted = [TopicPartition(p.topic, p.partition, since_ms) for p in partitions]
        found = consumer.offsets_for_times(wanted, timeout=10)
        for tp in found:
            if tp.offset < 0:  # no message that recent: start at the end
                tp.offset = consumer.get_watermark_offsets(tp, timeout=10)[1]
        consumer.assign(found)

    def step(self) -> bool:
        """One batch; True when messages were processed (or partitions are still awaited)."""
        messages = self.consumer.consume(self.options.batch_max, self.options.poll_timeout_s)
        if not messages:
            # with the wall clock, silent stations are checked about once a minute
            due = time.monotonic() - self._last_idle_check >= 60.0
            if self.options.wall_clock and self.state.buffers and due:
                self._last_idle_check = time.monotonic()
                self._emit(self.state.evaluate(set()))
            return not self.consumer.assignment()
        rows = self._decode(messages)
        touched = self.state.add(rows)
        self._emit(self.state.evaluate(touched))
        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as exc:
            log.warning("commit failed", extra={"error": str(exc)})
        return True

    def _decode(self, messages: Sequence[Message]) -> list[UnifiedMinute]:
        rows = []
        for message in messages:
            if message.error() is not None:
                log.warning("consumer error", extra={"error": str(message.error())})
                continue
            try:
                rows.append(UnifiedMinute.model_validate_json(message.value() or b""))
            except ValidationError as exc:
                log.error(
                    "undecodable unified minute skipped",
                    extra={
                        "partition": message.partition(),
                        "offset": message.offset(),
                        "error": str(exc),
                    },
                )
        return rows

    def _emit(self, alerts: list[Alert]) -> None:
        if not alerts:
            return
        for alert in alerts:
            self.producer.produce(
                self.options.alerts_topic, key=alert_key(alert), value=alert.to_json_bytes()
            )
            log.info(
                "alert",
                extra={"alert_id": alert.alert_id, "kind": alert.kind, "alert": alert.message},
            )
        self.producer.flush(30)
        lines = [line for line in map(encode_alert, alerts) if line is not None]
        self.writer.write(lines)
        self.alerts_emitted += len(alerts)


def run_alerts(
    kafka: KafkaSettings,
    writer: InfluxWriter,
    options: AlertsOptions,
    stop: StopFlag,
    bounds: RunBounds | None = None,
) -> AlertsService:
    """Run the alerts service until stopped (or its bounds end it); returns it for its counts."""
    consumer = make_consumer(kafka, options.group_id)
    producer = make_producer(kafka)
    service = AlertsService(consumer, producer, writer, options)
    consumer.subscribe([options.unified_topic], on_assign=service.on_assign)
    try:
        run_loop(service.step, stop=stop, interval_s=1.0, bounds=bounds)
    finally:
        producer.flush(30)
        consumer.close()
    return service


def latest_alerts(messages: Sequence[Message]) -> list[Alert]:
    """The newest message of each alert id, sorted by start (undecodable messages skipped)."""
    newest: dict[str, Alert] = {}
    for message in messages:
        try:
            alert = Alert.model_validate_json(message.value() or b"")
        except ValidationError as exc:
            log.error("undecodable alert skipped", extra={"error": str(exc)})
            continue
        newest[alert.alert_id] = alert
    return sorted(newest.values(), key=lambda a: (a.start, a.alert_id))
