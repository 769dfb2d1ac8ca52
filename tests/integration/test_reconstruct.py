"""Reconstruct end to end on Apache Kafka: two simulated stations through ingest and reconstruct.

The latest record of every station-minute on the rates topic must equal the row of
``mingo reconstruct`` (the pipeline functions) on the same files; every calibration a record
names is on the calibration topic and on disk; a reconstruct service SIGKILLed mid-stream and
restarted must leave the same latest records; two instances of one group split the stations.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from schemas.models import Calibration, MinuteRates
from schemas.topics import CALIBRATION, RATES_MINUTE, TOPICS
from services.common.kafka import create_topics, delete_topics, read_all, watermarks
from services.common.logbook import LogbookEntry, parse_logbook, z_positions_at
from services.common.runtime import RunBounds, StopFlag
from services.common.settings import KafkaSettings
from services.common.stations import StationSource, load_network
from services.ingest.service import IngestOptions, run_ingest
from services.reconstruct.calibration_records import calibration_path
from services.reconstruct.cli import load_dat
from services.reconstruct.pipeline import rates_rows, reconstruct_files
from services.reconstruct.service import (
    ReconstructOptions,
    Reconstructor,
    load_logbook,
    run_reconstruct,
)
from tests.simulated import simulate_day

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STATIONS = (1, 2)  #: on different partitions (murmur2 of "1" and "2": 3 and 0)
KILL_AFTER_OFFSETS = 100  #: SIGKILL once the rates topic holds this many offsets


@dataclass(frozen=True)
class Ingested:
    """The simulated day, in the raw topic, and the command's minute records for it."""

    kafka: KafkaSettings
    expected: dict[Minute, bytes]  #: (station, minute) -> MinuteRates JSON
    files: int  #: .dat files with events, all stations


Minute = tuple[int, datetime]


def _expected(out: Path, truth: dict[str, Any], station: int) -> dict[Minute, bytes]:
    """``mingo reconstruct`` of the station's files, with its logbook: JSON records by minute."""
    entry = truth["stations"][str(station)]
    entries: list[LogbookEntry] = []
    logbook = out / entry["logbook"]
    entries, _ = parse_logbook(logbook.read_text(), source=logbook.name)
    paths = sorted(out / f["path"] for f in entry["files"].values() if f["path"] and f["events"])
    results = reconstruct_files(
        station,
        (load_dat(p) for p in paths),
        lambda t: z_positions_at(entries, station, datetime.fromtimestamp(t, UTC)),
        load_network().station(station).reconstruction,
    )
    return {
        (station, row["time"]): MinuteRates(**row).to_json_bytes()
        for row in rates_rows(station, results)
    }


@pytest.fixture(scope="module")
def ingested(
    kafka_bootstrap: str, kafka_admin: AdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Ingested:
    out = tmp_path_factory.mktemp("sim")
    truth = simulate_day(out, STATIONS, rate_hz=1.0, seed=5, workers=2)
    delete_topics(kafka_admin, [t.name for t in TOPICS])
    create_topics(kafka_admin)
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    stations = [
        load_network()
        .station(s)
        .model_copy(update={"source": StationSource(kind="local", root=str(out / f"mingo0{s}"))})
        for s in STATIONS
    ]
    options = IngestOptions(instance=f"reco-{uuid.uuid4().hex[:6]}", settle_s=0, heartbeat_s=2)
    done = run_ingest(stations, kafka, options, StopFlag(), RunBounds(stop_when_idle=True))
    assert all(done[s] > 24 for s in STATIONS)  # the day's files, logs and logbook
    expected = {k: v for s in STATIONS for k, v in _expected(out, truth, s).items()}
    files = sum(
        1 for s in STATIONS for f in truth["stations"][str(s)]["files"].values() if f["events"]
    )
    return Ingested(kafka, expected, files)


@pytest.fixture
def rates_topic(ingested: Ingested, kafka_admin: AdminClient) -> KafkaSettings:
    """The rates and calibration topics emptied; the raw topic as ingest left it."""
    delete_topics(kafka_admin, [RATES_MINUTE.name, CALIBRATION.name])
    create_topics(kafka_admin, [RATES_MINUTE, CALIBRATION])
    return ingested.kafka


def _latest(kafka: KafkaSettings) -> tuple[dict[Minute, bytes], int]:
    """Latest committed record per station-minute (JSON), and the number of records."""
    latest: dict[Minute, bytes] = {}
    count = 0
    for message in read_all(kafka, RATES_MINUTE.name, max_wait_s=120):
        record = MinuteRates.model_validate_json(message.value())
        assert message.key() == str(record.station).encode()
        latest[(record.station, record.model_dump()["time"])] = message.value()
        count += 1
    return latest, count


def _calibrations(kafka: KafkaSettings) -> dict[str, bytes]:
    """Committed calibration records by version (key), JSON."""
    found: dict[str, bytes] = {}
    for message in read_all(kafka, CALIBRATION.name, max_wait_s=60):
        record = Calibration.model_validate_json(message.value())
        assert message.key() == record.version.encode()
        found[record.version] = message.value()
    return found


def _assert_calibrations_published(
    kafka: KafkaSettings, latest: dict[Minute, bytes], directory: Path
) -> dict[str, bytes]:
    """Every version a record names is on the calibration topic and, same bytes, on disk."""
    published = _calibrations(kafka)
    for value in latest.values():
        record = MinuteRates.model_validate_json(value)
        for version in record.calibration_version.split("+"):
            assert version in published, version
            path = calibration_path(directory, record.station, version)
            assert path.read_bytes() == published[version]
    return published


def _run_bounded(
    kafka: KafkaSettings,
    instance: str,
    group: str,
    calibration_dir: Path,
    state_dir: Path | None = None,
) -> tuple[int, float]:
    """Run the service until idle: (records published, seconds)."""
    started = time.monotonic()
    options = ReconstructOptions(
        instance=instance,
        group_id=group,
        heartbeat_s=2,
        calibration_dir=calibration_dir,
        state_dir=state_dir,
    )
    bounds = RunBounds(stop_when_idle=True)
    published = run_reconstruct(load_network(), kafka, options, StopFlag(), bounds)
    return published, time.monotonic() - started


@pytest.fixture(scope="module")
def clean_run() -> dict[str, int]:
    """Filled by the uninterrupted run, compared against by the interrupted one."""
    return {}


def _offsets(consumer: Consumer) -> int:
    """Offsets used on the rates topic (records and transaction markers, committed or not)."""
    return sum(
        watermarks(consumer, TopicPartition(RATES_MINUTE.name, p))[1]
        for p in range(RATES_MINUTE.partitions)
    )


def _assert_equal(latest: dict[Minute, bytes], expected: dict[Minute, bytes]) -> None:
    assert sorted(latest) == sorted(expected)
    for minute, row in expected.items():
        assert latest[minute] == row, minute


def test_minute_records_equal_the_command(
    rates_topic: KafkaSettings, ingested: Ingested, clean_run: dict[str, int], tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    instance, group = f"clean-{tag}", f"reco-clean-{tag}"
    published, elapsed = _run_bounded(rates_topic, instance, group, tmp_path)
    latest, count = _latest(rates_topic)
    assert count == published
    _assert_equal(latest, ingested.expected)
    # minutes shared by two files are published twice: once per file
    assert len(ingested.expected) <= count <= len(ingested.expected) + 2 * ingested.files
    clean_run["records"] = count
    # the calibrations the command made, each named by the records it produced, and no other
    calibrations = _assert_calibrations_published(rates_topic, latest, tmp_path)
    named = {
        version
        for value in ingested.expected.values()
        for version in MinuteRates.model_validate_json(value).calibration_version.split("+")
    }
    assert set(calibrations) == named
    assert len(list(tmp_path.glob("*/*.json"))) == len(named)
    # the committed offsets stand at the end: a restart finds nothing to do
    assert _run_bounded(rates_topic, instance, group, tmp_path)[0] == 0
    print(f"reconstruct: {count} records for {len(latest)} minutes in {elapsed:.1f} s")


def test_sigkill_and_restart_give_the_same_records(
    rates_topic: KafkaSettings, ingested: Ingested, clean_run: dict[str, int], tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    instance, group = f"killed-{tag}", f"reco-killed-{tag}"
    env = os.environ | {
        "MINGO_KAFKA_BOOTSTRAP": rates_topic.bootstrap,
        "MINGO_INSTANCE": instance,
        "MINGO_RECONSTRUCT_GROUP_ID": group,
        "MINGO_RECONSTRUCT_BATCH_MESSAGES": "1",  # a transaction per chunk: many commit points
        "MINGO_HEARTBEAT_S": "2",
        "MINGO_RECONSTRUCT_CALIBRATION_DIR": str(tmp_path),
        "MINGO_RECONSTRUCT_STATE_DIR": str(tmp_path / "state-killed"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.reconstruct"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    watcher = Consumer({"bootstrap.servers": rates_topic.bootstrap, "group.id": "unused"})
    try:
        deadline = time.monotonic() + 90
        while _offsets(watcher) < KILL_AFTER_OFFSETS:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "the service published nothing in 90 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        process.kill()
        watcher.close()
    _, at_kill = _latest(rates_topic)
    assert at_kill < len(ingested.expected), "killed too late: nothing left to do"

    # same instance and group, a fresh state folder (another host): the state comes back from
    # the changelog topic
    published, _ = _run_bounded(rates_topic, instance, group, tmp_path, tmp_path / "state-new")
    latest, count = _latest(rates_topic)
    _assert_equal(latest, ingested.expected)
    _assert_calibrations_published(rates_topic, latest, tmp_path)
    # nothing lost, nothing twice: the committed records are those of the uninterrupted run
    assert count == at_kill + published
    if "records" in clean_run:
        assert count == clean_run["records"]
    print(json.dumps({"records_at_kill": at_kill, "records_after_restart": count}))


class _HoldsFirstChunk(Reconstructor):
    """An instance that holds its first chunk until the other instance has one (at most 20 s).

    The data is already in the topic and the broker rebalances without delay, so the first
    instance to join could finish both stations before the second is assigned a partition.
    Holding the first chunk keeps it from polling, so the group's rebalance (range assignment:
    partitions 0-1 and 2-3, the stations on 0 and 3) completes before the work is done.
    """

    def __init__(self, *args: Any, mine: threading.Event, other: threading.Event) -> None:
        super().__init__(*args)
        self.mine, self.other = mine, other

    def process(self, value: bytes, key: bytes, headers: Any, state: Any) -> Any:
        if not self.mine.is_set():
            self.mine.set()
            self.other.wait(20)
        return super().process(value, key, headers, state)


def test_two_instances_split_the_stations(
    rates_topic: KafkaSettings, ingested: Ingested, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    group = f"reco-pair-{tag}"
    workers: list[Reconstructor] = []
    published = [0, 0]
    first_chunk = [threading.Event(), threading.Event()]

    def run(index: int) -> None:
        options = ReconstructOptions(
            instance=f"pair-{index}-{tag}",
            group_id=group,
            batch_messages=8,
            calibration_dir=tmp_path,
            heartbeat_s=2,
        )
        worker = _HoldsFirstChunk(
            load_network(),
            load_logbook(rates_topic),
            options,
            mine=first_chunk[index],
            other=first_chunk[1 - index],
        )
        workers.append(worker)
        bounds = RunBounds(stop_when_idle=True)
        published[index] = run_reconstruct(
            load_network(), rates_topic, options, StopFlag(), bounds, worker
        )

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not any(thread.is_alive() for thread in threads), "two instances did not finish"
    # the partitions are split, and with them the stations: each instance published its own
    stations = [set(worker.partitions) for worker in workers]
    assert stations[0] | stations[1] == set(STATIONS)
    assert all(published), published
    latest, count = _latest(rates_topic)
    assert count == sum(published)
    _assert_equal(latest, ingested.expected)
    _assert_calibrations_published(rates_topic, latest, tmp_path)
    print(json.dumps({"partitions": [w.partitions for w in workers], "published": published}))
