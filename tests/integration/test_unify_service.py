"""The unify service on Apache Kafka: the same rows as ``mingo process``, revisions, a SIGKILL.

One simulated station (1) for six hours of event files, with the day's logs and ERA5 files. The
inputs are what ``mingo process`` reads from those files (its own functions), published to fresh
topics; the service's final rows (highest revision per minute) must equal, field for field, the
rows ``mingo process`` writes to its Parquet files.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer

from schemas.base import Contract
from schemas.models import Era5Hour, LogReading, MinuteRates, UnifiedMinute
from schemas.topics import ERA5_HOURLY, LOGS_RAW, RATES_MINUTE, UNIFIED_MINUTE, station_key
from services.common.kafka import read_all
from services.common.runtime import RunBounds, StopFlag
from services.common.settings import KafkaSettings
from services.common.stations import load_network
from services.sink.files import read_range
from services.unify.cli import _Rejects, process, station_hours, station_rates, station_readings
from services.unify.revisions import rows_from_files
from services.unify.service import UnifyOptions, run_unify
from simulator.run import SimulationRequest, run_batch
from tests.integration.conftest import TopicFactory

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STATION = 1
DAY = date(2024, 3, 1)
HOURS = 6  #: event files kept (one per hour)
LATE_FROM = timedelta(hours=3)  #: logs from this time on arrive late


@dataclass(frozen=True)
class Inputs:
    """The records ``mingo process`` computes from the files, and its rows."""

    rates: list[MinuteRates]
    readings: list[LogReading]
    hours: list[Era5Hour]
    expected: dict[datetime, UnifiedMinute]  #: minute -> row of ``mingo process``
    start: datetime


def _process_rows(sim: Path, out: Path, start: datetime) -> dict[datetime, UnifiedMinute]:
    args = ["--input", str(sim), "--output", str(out), "--stations", str(STATION)]
    result = CliRunner().invoke(process, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = rows_from_files(read_range(out, STATION, start, start + timedelta(days=1)))
    return {row.time: row for row in rows}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    sim = tmp_path_factory.mktemp("sim")
    network = load_network()
    request = SimulationRequest(
        out=sim,
        stations=(network.station(STATION),),
        start=DAY,
        rate_hz=1.0,
        seed=11,
        acceptance_samples=50_000,
    )
    run_batch(request)
    dat = sim / f"mingo0{STATION}" / "dat"
    for path in sorted(dat.iterdir())[HOURS:]:
        path.unlink()  # six hours of events; the day's logs and ERA5 stay
    station = network.station(STATION)
    rejects = _Rejects(STATION)
    rates = [MinuteRates(**r) for r in station_rates(station, sim / "mingo01", rejects, lambda: 0)]
    readings = station_readings(station, sim / "mingo01", rejects)
    hours = station_hours(station, sim / "era5", rejects)
    start = rates[0].time
    expected = _process_rows(sim, tmp_path_factory.mktemp("out"), start)
    assert len(expected) == len(rates) >= 60 * HOURS - 2
    shutil.rmtree(sim)
    return Inputs(rates, readings, hours, expected, start)


@dataclass(frozen=True)
class Topics:
    kafka: KafkaSettings
    names: dict[str, str]  #: registry name -> this test's topic

    def options(self, instance: str, group: str, state_dir: Path) -> UnifyOptions:
        return UnifyOptions(
            instance=instance,
            group_id=group,
            heartbeat_s=2,
            state_dir=state_dir,
            commit_interval_s=0.5,
            idle_timeout_s=4,
            topics=self.names,
        )


@pytest.fixture
def topics(kafka_bootstrap: str, make_topic: TopicFactory) -> Topics:
    names = {
        spec.name: make_topic(partitions=spec.partitions, config=spec.broker_config())
        for spec in (RATES_MINUTE, LOGS_RAW, ERA5_HOURLY, UNIFIED_MINUTE)
    }
    return Topics(KafkaSettings(bootstrap=kafka_bootstrap), names)


def _publish(topics: Topics, topic: str, records: Iterable[Contract]) -> None:
    producer = Producer({"bootstrap.servers": topics.kafka.bootstrap, "linger.ms": 20})
    for record in records:
        producer.produce(topics.names[topic], record.to_json_bytes(), station_key(STATION))
    assert producer.flush(30) == 0


def _unified(topics: Topics) -> list[UnifiedMinute]:
    """Every committed row on the unified topic, in partition order."""
    rows = []
    for message in read_all(topics.kafka, topics.names[UNIFIED_MINUTE.name], max_wait_s=120):
        assert message.key() == station_key(STATION)
        rows.append(UnifiedMinute.model_validate_json(message.value()))
    return rows


def _latest(rows: Sequence[UnifiedMinute]) -> dict[datetime, UnifiedMinute]:
    """Highest revision per minute; every minute's revisions must be 0, 1, 2, ... once each."""
    by_minute: dict[datetime, list[int]] = {}
    latest: dict[datetime, UnifiedMinute] = {}
    for row in rows:
        by_minute.setdefault(row.time, []).append(row.revision)
        latest[row.time] = row
    for minute, revisions in by_minute.items():
        assert revisions == list(range(len(revisions))), minute
    return latest


def _assert_same_rows(latest: dict[datetime, UnifiedMinute], inputs: Inputs) -> None:
    assert sorted(latest) == sorted(inputs.expected)
    for minute, row in inputs.expected.items():
        assert latest[minute].model_copy(update={"revision": row.revision}) == row, minute


def _run(topics: Topics, instance: str, group: str, state_dir: Path) -> int:
    options = topics.options(instance, group, state_dir)
    return run_unify(
        load_network(), topics.kafka, options, StopFlag(), RunBounds(stop_when_idle=True)
    )


def test_final_rows_equal_mingo_process(topics: Topics, inputs: Inputs, tmp_path: Path) -> None:
    _publish(topics, ERA5_HOURLY.name, inputs.hours)
    _publish(topics, LOGS_RAW.name, inputs.readings)
    _publish(topics, RATES_MINUTE.name, inputs.rates)
    tag = uuid.uuid4().hex[:6]
    started = time.monotonic()
    published = _run(topics, f"eq-{tag}", f"unify-eq-{tag}", tmp_path / "state")
    elapsed = time.monotonic() - started
    rows = _unified(topics)
    assert len(rows) == published
    _assert_same_rows(_latest(rows), inputs)
    print(f"unify: {published} rows for {len(inputs.expected)} minutes in {elapsed:.1f} s")
