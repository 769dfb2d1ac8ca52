"""The unify service on Apache Kafka: the same rows as ``mingo process``, revisions, a SIGKILL.

One simulated station (1) for four hours of event files, with the day's logs and ERA5 files. The
inputs are what ``mingo process`` reads from those files (its own functions), published to fresh
topics; the service's final rows (highest revision per minute) must equal, field for field, the
rows ``mingo process`` writes to its Parquet files.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from schemas.base import Contract
from schemas.models import Era5Hour, LogReading, MinuteRates, UnifiedMinute
from schemas.topics import (
    COEFFICIENTS,
    ERA5_HOURLY,
    LOGS_RAW,
    RATES_MINUTE,
    STATUS,
    UNIFIED_MINUTE,
    station_key,
)
from services.common.coefficients import write_record
from services.common.kafka import create_topics, delete_topics, read_all, watermarks
from services.common.runtime import RunBounds, StopFlag
from services.common.settings import KafkaSettings
from services.common.stations import load_network
from services.sink.files import read_range
from services.unify.cli import _Rejects, process, station_hours, station_rates, station_readings
from services.unify.flags import Flag
from services.unify.revisions import rows_from_files
from services.unify.service import UnifyOptions, run_unify
from simulator.run import SimulationRequest, run_batch
from tests.coefficient_records import teff_record

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STATION = 1
DAY = date(2024, 3, 1)
HOURS = 4  #: event files kept (one per hour)
LATE_FROM = timedelta(hours=1)  #: logs from here on come after the rates up to 04:00
KILL_AFTER_OFFSETS = 80  #: SIGKILL once the unified topic holds this many offsets
GROUP_PREFIX = "unify-test-"


@dataclass(frozen=True)
class Inputs:
    """The records ``mingo process`` computes from the files, and its rows."""

    rates: list[MinuteRates]
    readings: list[LogReading]
    hours: list[Era5Hour]
    expected: dict[datetime, UnifiedMinute]  #: minute -> row of ``mingo process``
    start: datetime
    #: rows of ``mingo process --coefficients`` with :data:`RECORD`
    expected_with_record: dict[datetime, UnifiedMinute]


#: A fitted record (mingo fit --write): β and α_T different from the configured ones.
RECORD = teff_record(STATION, 1, beta=-0.14, alpha_t=-0.22, p0_hpa=942.0)


def _process_rows(
    sim: Path, out: Path, start: datetime, *extra: str
) -> dict[datetime, UnifiedMinute]:
    args = ["--input", str(sim), "--output", str(out), "--stations", str(STATION), *extra]
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
        path.unlink()  # four hours of events; the day's logs and ERA5 stay
    station = network.station(STATION)
    rejects = _Rejects(STATION)
    rates = [MinuteRates(**r) for r in station_rates(station, sim / "mingo01", rejects, lambda: 0)]
    readings = station_readings(station, sim / "mingo01", rejects)
    hours = station_hours(station, sim / "era5", rejects)
    start = rates[0].time
    expected = _process_rows(sim, tmp_path_factory.mktemp("out"), start)
    assert len(expected) == len(rates) >= 60 * HOURS - 2
    records = tmp_path_factory.mktemp("coefficients")
    write_record(records, RECORD)
    with_record = _process_rows(
        sim, tmp_path_factory.mktemp("out"), start, "--coefficients", str(records)
    )
    shutil.rmtree(sim)
    return Inputs(rates, readings, hours, expected, start, with_record)


@pytest.fixture
def kafka(kafka_bootstrap: str, kafka_admin: AdminClient) -> Iterator[KafkaSettings]:
    """The topics of unify, empty; the changelog topics of the test's groups deleted after."""
    specs = [RATES_MINUTE, LOGS_RAW, ERA5_HOURLY, COEFFICIENTS, UNIFIED_MINUTE]
    delete_topics(kafka_admin, [spec.name for spec in specs])
    create_topics(kafka_admin, [*specs, STATUS])
    yield KafkaSettings(bootstrap=kafka_bootstrap)
    changelogs = [
        name
        for name in kafka_admin.list_topics(timeout=10).topics
        if name.startswith(f"changelog__{GROUP_PREFIX}")
    ]
    delete_topics(kafka_admin, changelogs)


def _options(instance: str, group: str, state_dir: Path) -> UnifyOptions:
    return UnifyOptions(
        instance=instance,
        group_id=group,
        heartbeat_s=2,
        state_dir=state_dir,
        commit_interval_s=0.5,
        idle_timeout_s=2,
    )


def _names() -> tuple[str, str]:
    """A fresh instance id and consumer group."""
    tag = uuid.uuid4().hex[:6]
    return f"test-{tag}", f"{GROUP_PREFIX}{tag}"


def _run(kafka: KafkaSettings, instance: str, group: str, state_dir: Path) -> int:
    """Run the service in process until idle; the rows it published."""
    options = _options(instance, group, state_dir)
    return run_unify(load_network(), kafka, options, StopFlag(), RunBounds(stop_when_idle=True))


def _publish(kafka: KafkaSettings, topic: str, records: Iterable[Contract]) -> None:
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 20})
    for record in records:
        producer.produce(topic, record.to_json_bytes(), station_key(STATION))
    assert producer.flush(30) == 0


def _publish_all(kafka: KafkaSettings, inputs: Inputs) -> None:
    _publish(kafka, ERA5_HOURLY.name, inputs.hours)
    _publish(kafka, LOGS_RAW.name, inputs.readings)
    _publish(kafka, RATES_MINUTE.name, inputs.rates)


def _unified(kafka: KafkaSettings) -> list[UnifiedMinute]:
    """Every committed row on the unified topic, in partition order."""
    rows = []
    for message in read_all(kafka, UNIFIED_MINUTE.name, max_wait_s=120):
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


def _assert_same_rows(
    latest: dict[datetime, UnifiedMinute],
    inputs: Inputs,
    expected: dict[datetime, UnifiedMinute] | None = None,
) -> None:
    """The final rows are ``mingo process``'s, to the last digit (revisions aside)."""
    expected = inputs.expected if expected is None else expected
    assert sorted(latest) == sorted(expected)
    for minute, row in expected.items():
        assert latest[minute].model_copy(update={"revision": row.revision}) == row, minute


@pytest.fixture(scope="module")
def clean_run() -> dict[str, list[bytes]]:
    """Filled by the uninterrupted run, compared against by the killed one."""
    return {}


def test_final_rows_equal_mingo_process(
    kafka: KafkaSettings, inputs: Inputs, tmp_path: Path, clean_run: dict[str, list[bytes]]
) -> None:
    _publish_all(kafka, inputs)
    instance, group = _names()
    started = time.monotonic()
    published = _run(kafka, instance, group, tmp_path / "state")
    elapsed = time.monotonic() - started
    rows = _unified(kafka)
    assert len(rows) == published
    _assert_same_rows(_latest(rows), inputs)
    clean_run["rows"] = [row.to_json_bytes() for row in rows]
    print(f"unify: {published} rows for {len(inputs.expected)} minutes in {elapsed:.1f} s")


def test_a_published_coefficients_record_revises_the_rows(
    kafka: KafkaSettings, inputs: Inputs, tmp_path: Path
) -> None:
    # mingo fit --write --publish after the rows were made: the service recorrects the station's
    # minutes (one revision higher), and ends where mingo process --coefficients does
    _publish_all(kafka, inputs)
    instance, group = _names()
    _run(kafka, instance, group, tmp_path / "state")
    before = _latest(_unified(kafka))
    _assert_same_rows(before, inputs)
    _publish(kafka, COEFFICIENTS.name, [RECORD])
    _run(kafka, instance, group, tmp_path / "state")
    rows = _unified(kafka)
    latest = _latest(rows)
    _assert_same_rows(latest, inputs, inputs.expected_with_record)
    with_record = inputs.expected_with_record
    revised = {minute for minute, row in with_record.items() if row != inputs.expected[minute]}
    assert len(revised) >= len(inputs.expected) - 5  # every minute with pressure and ERA5
    for minute, row in latest.items():
        assert row.revision == before[minute].revision + (minute in revised), minute
    # the same record again (a replay): nothing new
    _publish(kafka, COEFFICIENTS.name, [RECORD])
    _run(kafka, instance, group, tmp_path / "state")
    assert len(_unified(kafka)) == len(rows)


def test_rows_are_committed_once_caught_up_not_a_commit_interval_later(
    kafka: KafkaSettings, inputs: Inputs, tmp_path: Path
) -> None:
    # a checkpoint commits as soon as the consumer has caught up (QuietApplication): the rows
    # reach the sink while the service idles, long before its commit interval (the inputs are
    # fewer than batch_records, so only that can commit them before the stop)
    _publish_all(kafka, inputs)
    instance, group = _names()
    options = replace(_options(instance, group, tmp_path / "state"), commit_interval_s=600.0)
    stop = StopFlag()
    worker = threading.Thread(target=run_unify, args=(load_network(), kafka, options, stop))
    worker.start()
    try:
        deadline = time.monotonic() + 120
        latest: dict[datetime, UnifiedMinute] = {}
        while len(latest) < len(inputs.expected):
            assert worker.is_alive(), "the service stopped"
            assert time.monotonic() < deadline, f"{len(latest)} minutes committed after 120 s"
            time.sleep(1.0)
            latest = _latest(_unified(kafka))
        assert worker.is_alive()  # committed while running, not by the stop
        _assert_same_rows(latest, inputs)
    finally:
        stop.set()
        worker.join(60)


def _era5t(hour: Era5Hour) -> Era5Hour:
    """The preliminary (ERA5T) version of a final hour: a little off, expver 0005."""
    assert hour.t_eff_k is not None and hour.expver == "0001"
    change = {
        "temp_ground_c": hour.temp_ground_c + 0.4,
        "surface_pressure_hpa": hour.surface_pressure_hpa + 0.3,
        "t_eff_k": hour.t_eff_k + 0.5,
    }
    return hour.model_copy(update=change | {"expver": "0005", "revision": 0})


def test_late_arrivals_revise_the_rows(
    kafka: KafkaSettings, inputs: Inputs, tmp_path: Path
) -> None:
    instance, group = _names()
    late_from = inputs.start + LATE_FROM
    seen = 0

    def stage() -> tuple[list[UnifiedMinute], dict[datetime, UnifiedMinute]]:
        """Run until idle: the rows this stage emitted, and the latest rows so far."""
        nonlocal seen
        _run(kafka, instance, group, tmp_path / "state")
        rows = _unified(kafka)
        new, seen = rows[seen:], len(rows)
        return new, _latest(rows)

    minutes = set(inputs.expected)
    # 1. the logs before 01:00, then the rates, no ERA5 yet: new rows, ERA5 pending
    _publish(kafka, LOGS_RAW.name, [r for r in inputs.readings if r.time < late_from])
    _publish(kafka, RATES_MINUTE.name, inputs.rates)
    new, _ = stage()
    assert {r.time for r in new} == minutes and len(new) == len(minutes)
    assert all(r.revision == 0 and r.quality_flags & Flag.ERA5_PENDING for r in new)
    assert all(r.rate_pt_corr_hz is None for r in new)

    # 2. ERA5T arrives (days later): every row revised once, corrected, flagged preliminary
    _publish(kafka, ERA5_HOURLY.name, [_era5t(h) for h in inputs.hours])
    new, _ = stage()
    assert {r.time for r in new} == minutes and len(new) == len(minutes)
    for row in new:
        assert row.revision == 1 and row.rate_pt_corr_hz is not None
        assert row.quality_flags & Flag.ERA5_PRELIMINARY
        assert not row.quality_flags & Flag.ERA5_PENDING

    # 3. the logs from 01:00 on, three hours late: the rows they reach are revised (once per
    # log family that fills a minute, as the families' files arrive one after the other)
    _publish(kafka, LOGS_RAW.name, [r for r in inputs.readings if r.time >= late_from])
    new, latest = stage()
    revised = {r.time for r in new}
    assert all(r.revision >= 2 for r in new)
    assert {m for m in minutes if m >= late_from} <= revised  # no log values there before
    assert min(revised) >= late_from - timedelta(minutes=31)  # beyond the gap: untouched
    assert all(latest[m].revision == 1 for m in minutes - revised)
    assert not any(latest[m].quality_flags & Flag.ENV_MISSING for m in revised)

    # 4. final ERA5 replaces ERA5T (months later): revised again; now equal to mingo process
    _publish(kafka, ERA5_HOURLY.name, [h.model_copy(update={"revision": 1}) for h in inputs.hours])
    new, latest = stage()
    assert {r.time for r in new} == minutes
    assert not any(r.quality_flags & Flag.ERA5_PRELIMINARY for r in latest.values())
    _assert_same_rows(latest, inputs)


def _offsets(consumer: Consumer) -> int:
    """Offsets used on the unified topic (rows and transaction markers)."""
    return sum(
        watermarks(consumer, TopicPartition(UNIFIED_MINUTE.name, p))[1]
        for p in range(UNIFIED_MINUTE.partitions)
    )


def test_sigkill_and_restart_give_the_same_rows(
    kafka: KafkaSettings, inputs: Inputs, tmp_path: Path, clean_run: dict[str, list[bytes]]
) -> None:
    _publish_all(kafka, inputs)
    instance, group = _names()
    env = os.environ | {
        "MINGO_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "MINGO_INSTANCE": instance,
        "MINGO_UNIFY_GROUP_ID": group,
        "MINGO_UNIFY_STATE_DIR": str(tmp_path / "killed"),
        # many small transactions: many commit points, the kill falls between two of them
        "MINGO_UNIFY_COMMIT_INTERVAL_S": "0.2",
        "MINGO_UNIFY_BATCH_RECORDS": "25",
        "MINGO_HEARTBEAT_S": "2",
    }
    log_file = tmp_path / "killed.log"
    with log_file.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.unify"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    watcher = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "unused"})
    try:
        deadline = time.monotonic() + 120
        while _offsets(watcher) < KILL_AFTER_OFFSETS:
            assert process.poll() is None, log_file.read_text()[-3000:]
            assert time.monotonic() < deadline, "the service published nothing in 120 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        process.kill()
        watcher.close()
    at_kill = len(_unified(kafka))
    assert at_kill < len(inputs.expected), "killed too late: nothing left to do"

    # same instance (its transactional id fences the dead one) and group; a new local state
    # folder, so the state comes back from the changelog topic
    published = _run(kafka, instance, group, tmp_path / "restarted")
    rows = _unified(kafka)
    assert len(rows) == at_kill + published  # nothing committed twice, nothing lost
    # revisions 0, 1, 2, ... once each across the kill; the final rows are mingo process's
    latest = _latest(rows)
    _assert_same_rows(latest, inputs)
    if "rows" in clean_run:
        # and the clean run's, byte for byte but the revision: how many intermediate revisions
        # a minute gets depends on where the checkpoints (the batches) fall
        clean = _latest([UnifiedMinute.model_validate_json(row) for row in clean_run["rows"]])
        assert {t: _content(row) for t, row in latest.items()} == {
            t: _content(row) for t, row in clean.items()
        }
    print(f"unify: {at_kill} rows committed at the kill, {len(rows)} after the restart")


def _content(row: UnifiedMinute) -> bytes:
    return row.model_copy(update={"revision": 0}).to_json_bytes()
