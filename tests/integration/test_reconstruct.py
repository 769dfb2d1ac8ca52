"""Reconstruct end to end on Apache Kafka: a simulated station through ingest and reconstruct.

The latest record of every station-minute on the rates topic must equal the row of
``mingo reconstruct`` (the pipeline functions) on the same files, and a reconstruct service
SIGKILLed mid-stream and restarted must leave the same latest records.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from schemas.models import MinuteRates
from schemas.topics import RATES_MINUTE, TOPICS
from services.common.kafka import create_topics, delete_topics, read_all, watermarks
from services.common.logbook import LogbookEntry, parse_logbook, z_positions_at
from services.common.runtime import RunBounds, StopFlag
from services.common.settings import KafkaSettings
from services.common.stations import StationSource, load_network
from services.ingest.service import IngestOptions, run_ingest
from services.reconstruct.cli import load_dat
from services.reconstruct.pipeline import rates_rows, reconstruct_files
from services.reconstruct.service import ReconstructOptions, run_reconstruct
from tests.simulated import simulate_day

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STATION = 1
KILL_AFTER_OFFSETS = 100  #: SIGKILL once the rates topic holds this many offsets


@dataclass(frozen=True)
class Ingested:
    """The simulated day, in the raw topic, and the command's minute records for it."""

    kafka: KafkaSettings
    expected: dict[datetime, bytes]  #: minute -> MinuteRates JSON


def _expected(out: Path, truth: dict[str, Any]) -> dict[datetime, bytes]:
    """``mingo reconstruct`` of the station's files, with its logbook: JSON records by minute."""
    entry = truth["stations"][str(STATION)]
    entries: list[LogbookEntry] = []
    logbook = out / entry["logbook"]
    entries, _ = parse_logbook(logbook.read_text(), source=logbook.name)
    paths = sorted(out / f["path"] for f in entry["files"].values() if f["path"] and f["events"])
    results = reconstruct_files(
        STATION,
        (load_dat(p) for p in paths),
        lambda t: z_positions_at(entries, STATION, datetime.fromtimestamp(t, UTC)),
        load_network().station(STATION).reconstruction,
    )
    return {row["time"]: MinuteRates(**row).to_json_bytes() for row in rates_rows(STATION, results)}


@pytest.fixture(scope="module")
def ingested(
    kafka_bootstrap: str, kafka_admin: AdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Ingested:
    out = tmp_path_factory.mktemp("sim")
    truth = simulate_day(out, (STATION,), rate_hz=2.0, seed=5)
    delete_topics(kafka_admin, [t.name for t in TOPICS])
    create_topics(kafka_admin)
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    station = load_network().station(STATION)
    station = station.model_copy(
        update={"source": StationSource(kind="local", root=str(out / f"mingo0{STATION}"))}
    )
    options = IngestOptions(instance=f"reco-{uuid.uuid4().hex[:6]}", settle_s=0, heartbeat_s=2)
    done = run_ingest([station], kafka, options, StopFlag(), RunBounds(stop_when_idle=True))
    assert done[STATION] > 24  # the day's files, logs and logbook
    return Ingested(kafka, _expected(out, truth))


@pytest.fixture
def rates_topic(ingested: Ingested, kafka_admin: AdminClient) -> KafkaSettings:
    """The rates topic emptied; the raw topic as ingest left it."""
    delete_topics(kafka_admin, [RATES_MINUTE.name])
    create_topics(kafka_admin, [RATES_MINUTE])
    return ingested.kafka


def _latest(kafka: KafkaSettings) -> tuple[dict[datetime, bytes], int]:
    """Latest committed record per minute of the station (JSON), and the number of records."""
    latest: dict[datetime, bytes] = {}
    count = 0
    for message in read_all(kafka, RATES_MINUTE.name, max_wait_s=120):
        record = MinuteRates.model_validate_json(message.value())
        assert message.key() == str(STATION).encode()
        latest[record.model_dump()["time"]] = message.value()
        count += 1
    return latest, count


def _run_bounded(kafka: KafkaSettings, instance: str, group: str) -> tuple[int, float]:
    """Run the service until idle: (records published, seconds)."""
    started = time.monotonic()
    options = ReconstructOptions(instance=instance, group_id=group, heartbeat_s=2)
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


def _assert_equal(latest: dict[datetime, bytes], expected: dict[datetime, bytes]) -> None:
    assert sorted(latest) == sorted(expected)
    for minute, row in expected.items():
        assert latest[minute] == row, minute


def test_minute_records_equal_the_command(
    rates_topic: KafkaSettings, ingested: Ingested, clean_run: dict[str, int]
) -> None:
    tag = uuid.uuid4().hex[:6]
    instance, group = f"clean-{tag}", f"reco-clean-{tag}"
    published, elapsed = _run_bounded(rates_topic, instance, group)
    latest, count = _latest(rates_topic)
    assert count == published
    _assert_equal(latest, ingested.expected)
    # minutes shared by two files are published twice: once per file
    assert len(ingested.expected) <= count <= len(ingested.expected) + 2 * 24
    clean_run["records"] = count
    # the committed offsets stand at the end: a restart finds nothing to do
    assert _run_bounded(rates_topic, instance, group)[0] == 0
    print(f"reconstruct: {count} records for {len(latest)} minutes in {elapsed:.1f} s")


def test_sigkill_and_restart_give_the_same_records(
    rates_topic: KafkaSettings, ingested: Ingested, clean_run: dict[str, int]
) -> None:
    tag = uuid.uuid4().hex[:6]
    instance, group = f"killed-{tag}", f"reco-killed-{tag}"
    env = os.environ | {
        "MINGO_KAFKA_BOOTSTRAP": rates_topic.bootstrap,
        "MINGO_INSTANCE": instance,
        "MINGO_RECONSTRUCT_GROUP_ID": group,
        "MINGO_RECONSTRUCT_BATCH_MESSAGES": "1",  # a transaction per chunk: many commit points
        "MINGO_HEARTBEAT_S": "2",
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

    published, _ = _run_bounded(rates_topic, instance, group)  # same instance and group
    latest, count = _latest(rates_topic)
    _assert_equal(latest, ingested.expected)
    # nothing lost, nothing twice: the committed records are those of the uninterrupted run
    assert count == at_kill + published
    if "records" in clean_run:
        assert count == clean_run["records"]
    print(json.dumps({"records_at_kill": at_kill, "records_after_restart": count}))
