"""The sink on Apache Kafka + InfluxDB: rows and statuses in, points and files out, nothing lost.

Unified minutes are built here with realistic values (unify is written separately), produced to
private topics, stored by the sink, then queried back from InfluxDB and read back from the files.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from infra import manage
from schemas.topics import station_key
from services.common.runtime import StopFlag
from services.common.settings import KafkaSettings
from services.common.status import status_key, status_message
from services.sink.files import DailyFiles, day_path, read_csv
from services.sink.influx import InfluxTarget, InfluxV1Writer
from services.sink.service import SinkOptions, SinkService, make_writer, run_sink
from tests.integration.conftest import TopicFactory
from tests.sink_rows import unified_row, unified_rows

pytestmark = pytest.mark.integration

START = datetime(2024, 3, 1, 23, 50, tzinfo=UTC)


def query(url: str, db: str, q: str) -> list[dict[str, Any]]:
    """Series of an InfluxQL query (epoch seconds)."""
    response = httpx.get(
        f"{url}/query", params={"db": db, "q": q, "epoch": "s"}, timeout=10, trust_env=False
    )
    response.raise_for_status()
    result = response.json()["results"][0]
    assert "error" not in result, result
    return list(result.get("series", []))


def drop_database(url: str, db: str) -> None:
    httpx.post(f"{url}/query", data={"q": f'DROP DATABASE "{db}"'}, timeout=10, trust_env=False)


def produce(bootstrap: str, topic: str, rows: list[Any]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for row in rows:
        producer.produce(topic, key=station_key(row.station), value=row.to_json_bytes())
    assert producer.flush(30) == 0


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.3)


def count_points(url: str, db: str, station: int) -> int:
    series = query(url, db, f"SELECT count(live_s) FROM unified WHERE station='{station}'")
    return int(series[0]["values"][0][1]) if series else 0


class RunningSink:
    """The sink in a thread, stopped (SIGTERM-like) at the end."""

    def __init__(
        self, bootstrap: str, url: str, db: str, topics: tuple[str, str], out: Path, group: str
    ) -> None:
        self.stop = StopFlag()
        self.writer = make_writer(InfluxTarget(url=url, database=db), create_database=True)
        self.files = DailyFiles(out)
        options = SinkOptions(
            instance="test",
            group_id=group,
            unified_topic=topics[0],
            status_topic=topics[1],
            poll_timeout_s=0.3,
            idle_interval_s=0.1,
            backoff_initial_s=0.2,
            backoff_max_s=1.0,
        )
        self.result: list[SinkService] = []
        kafka = KafkaSettings(bootstrap=bootstrap)
        self.thread = threading.Thread(
            target=lambda: self.result.append(
                run_sink(kafka, self.writer, self.files, options, self.stop)
            ),
            daemon=True,
        )
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        self.writer.close()


@pytest.fixture
def sink_env(
    kafka_bootstrap: str, influx_url: str, make_topic: TopicFactory, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    db = f"test_sink_{uuid.uuid4().hex[:10]}"
    env = {
        "bootstrap": kafka_bootstrap,
        "url": influx_url,
        "db": db,
        "topics": (make_topic(partitions=2), make_topic(partitions=1)),
        "out": tmp_path / "out",
        "group": f"test-sink-{uuid.uuid4().hex[:8]}",
    }
    yield env
    drop_database(influx_url, db)


def start(env: dict[str, Any], url: str | None = None) -> RunningSink:
    return RunningSink(
        env["bootstrap"], url or env["url"], env["db"], env["topics"], env["out"], env["group"]
    )


def test_rows_and_statuses_reach_influxdb_and_files(sink_env: dict[str, Any]) -> None:
    env = sink_env
    rows = unified_rows(1, START, 20) + unified_rows(2, START, 20, quality=["era5_missing"])
    produce(env["bootstrap"], env["topics"][0], rows)
    status = status_message(
        "ingest", "test", "file_summary", station=1, source="dat", file="mi0124061000000.dat",
        newest_data_time=START, lag_s=12.0, lines_total=100, lines_valid=98, lines_rejected=2,
    )  # fmt: skip
    producer = Producer({"bootstrap.servers": env["bootstrap"]})
    producer.produce(env["topics"][1], key=status_key(status), value=status.to_json_bytes())
    producer.flush(10)

    sink = start(env)
    try:
        wait_for(
            lambda: (
                count_points(env["url"], env["db"], 1) == 20
                and count_points(env["url"], env["db"], 2) == 20
            ),
            60,
            "40 points",
        )
    finally:
        sink.close()

    [series] = query(
        env["url"], env["db"], "SELECT rate_total_hz, count_1234, quality FROM unified "
        "WHERE station='1' AND time >= '2024-03-01T23:50:00Z' AND time < '2024-03-02T00:10:00Z'",
    )  # fmt: skip
    assert [v[0] for v in series["values"]] == [int(r.time.timestamp()) for r in rows[:20]]
    assert [v[1] for v in series["values"]] == pytest.approx([r.rate_total_hz for r in rows[:20]])
    assert [v[2] for v in series["values"]] == [r.count_1234 for r in rows[:20]]
    keys = query(env["url"], env["db"], "SHOW FIELD KEYS FROM unified")[0]["values"]
    types = dict((k, t) for k, t in keys)
    assert types["count_1234"] == "integer" and types["live_s"] == "float"
    assert types["quality"] == "string" and types["quality_flags"] == "integer"
    tags = query(env["url"], env["db"], "SHOW TAG KEYS FROM unified")[0]["values"]
    assert tags == [["station"]]
    [status_series] = query(
        env["url"], env["db"], "SELECT lines_rejected, newest_data_time_s FROM pipeline_status "
        "WHERE service='ingest' AND station='1' AND source='dat' AND time > now() - 1h",
    )  # fmt: skip
    assert status_series["values"][0][1:] == [2, int(START.timestamp())]
    fresh = query(
        env["url"], env["db"], "SELECT last(newest_data_time_s) FROM pipeline_status "
        "WHERE service='sink' AND source='unified' AND time > now() - 1h GROUP BY station",
    )  # fmt: skip
    assert {s["tags"]["station"]: s["values"][0][1] for s in fresh} == {
        "1": int(rows[19].time.timestamp()),
        "2": int(rows[39].time.timestamp()),
    }

    # files: the day split at midnight, every row once, values equal to the topic
    day1 = read_csv(day_path(env["out"], 1, START.date()))
    day2 = read_csv(day_path(env["out"], 1, (START + timedelta(days=1)).date()))
    assert len(day1) == 10 and len(day2) == 10
    assert list(day1["rate_total_hz"]) == pytest.approx([r.rate_total_hz for r in rows[:10]])
    station2 = read_csv(day_path(env["out"], 2, START.date()))
    assert set(station2["quality"]) == {"era5_missing"}


def test_a_revision_overwrites_in_influxdb_and_files(sink_env: dict[str, Any]) -> None:
    env = sink_env
    first = unified_rows(1, START, 5)
    revised = unified_row(1, START + timedelta(minutes=2), revision=1, rate_pt_corr_hz=7.5)
    stale = unified_row(1, START + timedelta(minutes=2), revision=0, rate_pt_corr_hz=1.0)
    produce(env["bootstrap"], env["topics"][0], [*first, revised])
    sink = start(env)
    try:
        wait_for(lambda: count_points(env["url"], env["db"], 1) == 5, 60, "5 points")
        path = day_path(env["out"], 1, START.date())
        wait_for(
            lambda: path.exists() and 1 in read_csv(path)["revision"].tolist(),
            30,
            "the revision in the file",
        )
        produce(env["bootstrap"], env["topics"][0], [stale])  # a late replay of revision 0
        time.sleep(2)
    finally:
        sink.close()
    [series] = query(
        env["url"], env["db"], "SELECT rate_pt_corr_hz, revision FROM unified "
        "WHERE time >= '2024-03-01T23:52:00Z' AND time < '2024-03-01T23:53:00Z'",
    )  # fmt: skip
    assert len(series["values"]) == 1  # one point per station-minute, whatever was written
    frame = read_csv(day_path(env["out"], 1, START.date()))
    assert len(frame) == 5
    row = frame.loc[frame["time"] == START + timedelta(minutes=2)].iloc[0]
    assert row["revision"] == 1 and row["rate_pt_corr_hz"] == 7.5  # highest revision wins


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((manage.HOST, 0))
        return int(sock.getsockname()[1])


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], 10)
        return sum(max(tp.offset, 0) for tp in offsets)
    finally:
        consumer.close()


@pytest.mark.slow
def test_influxdb_down_mid_run_loses_nothing(sink_env: dict[str, Any], tmp_path: Path) -> None:
    env = sink_env
    settings = replace(
        manage.Settings.from_env(),
        state_dir=tmp_path / "private-influx",
        influx_port=_free_port(),
        influx_rpc_port=_free_port(),
    )
    [server] = manage.up(["influxdb"], settings=settings)
    url = server.address
    try:
        rows = unified_rows(1, START, 30)
        produce(env["bootstrap"], env["topics"][0], rows[:10])
        sink = start(env, url)
        try:
            wait_for(lambda: count_points(url, env["db"], 1) == 10, 60, "10 points")
            wait_for(
                lambda: committed(env["bootstrap"], env["group"], env["topics"][0], 2) == 10,
                30,
                "10 offsets committed",
            )
            manage.down(["influxdb"], settings=settings)
            produce(env["bootstrap"], env["topics"][0], rows[10:])
            time.sleep(4)  # the sink retries against a dead InfluxDB: it must not commit
            assert committed(env["bootstrap"], env["group"], env["topics"][0], 2) == 10
            manage.up(["influxdb"], settings=settings)
            wait_for(lambda: count_points(url, env["db"], 1) == 30, 60, "30 points")
            wait_for(
                lambda: committed(env["bootstrap"], env["group"], env["topics"][0], 2) == 30,
                30,
                "offsets committed",
            )
        finally:
            sink.close()
    finally:
        manage.down(["influxdb"], settings=settings)
    files = [read_csv(day_path(env["out"], 1, d)) for d in (START.date(), rows[-1].time.date())]
    assert sum(len(f) for f in files) == 30


def test_writer_gzip_batches_split(influx_url: str) -> None:
    db = f"test_sink_{uuid.uuid4().hex[:10]}"
    writer = InfluxV1Writer(InfluxTarget(url=influx_url, database=db, batch_lines=7))
    try:
        writer.ensure_database()
        writer.write([f"m,station=1 v={i}.5 {1_700_000_040 + 60 * i}" for i in range(20)])
        [series] = query(influx_url, db, "SELECT count(v) FROM m")
        assert series["values"][0][1] == 20
    finally:
        writer.close()
        drop_database(influx_url, db)


def _environment(**values: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("MINGO_")}
    return keep | {"MINGO_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"} | values


@pytest.mark.slow
def test_sink_process_stores_and_stops_on_sigterm(
    kafka_bootstrap: str, influx_url: str, make_topic: TopicFactory, tmp_path: Path
) -> None:
    """``python -m services.sink``: settings from MINGO_*, stores, stops cleanly on SIGTERM."""
    unified, status = make_topic(partitions=2), make_topic()
    db = f"test_sink_{uuid.uuid4().hex[:10]}"
    start = datetime(2031, 1, 1, tzinfo=UTC) + timedelta(hours=uuid.uuid4().int % 10_000)
    rows = unified_rows(9, start, 5)
    env = _environment(
        MINGO_KAFKA_BOOTSTRAP=kafka_bootstrap,
        MINGO_INFLUX_URL=influx_url,
        MINGO_INFLUX_DATABASE=db,
        MINGO_INFLUX_TOKEN="not-logged-0123",
        MINGO_SINK_OUT_DIR=str(tmp_path / "out"),
        MINGO_SINK_GROUP=f"test-sink-{uuid.uuid4().hex[:8]}",
        MINGO_INSTANCE="sink-test",
        MINGO_SINK_UNIFIED_TOPIC=unified,
        MINGO_SINK_STATUS_TOPIC=status,
    )
    httpx.post(f"{influx_url}/query", params={"q": f'CREATE DATABASE "{db}"'}, trust_env=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "services.sink"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        produce(kafka_bootstrap, unified, rows)

        def stored() -> bool:
            first, end = int(start.timestamp()), int(start.timestamp()) + 300
            series = query(
                influx_url, db, "SELECT count(live_s) FROM unified WHERE station='9' AND "
                f"time >= {first}s AND time < {end}s",
            )  # fmt: skip
            return bool(series) and series[0]["values"][0][1] == 5

        wait_for(stored, 60, "the process to store 5 rows")
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        drop_database(influx_url, db)
    assert process.returncode == 0, err[-2000:]
    assert "not-logged-0123" not in err
    assert '"stop requested"' in err or "stop requested" in err
    assert len(read_csv(day_path(tmp_path / "out", 9, start.date()))) >= 5


@pytest.mark.slow
def test_api_process_binds_loopback_and_answers(tmp_path: Path) -> None:
    """``python -m services.sink.api``: loopback by default, /health answers, SIGTERM stops it."""
    DailyFiles(tmp_path).write(unified_rows(1, START, 3))
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.sink.api"],
        env=_environment(MINGO_API_PORT=str(port), MINGO_SINK_OUT_DIR=str(tmp_path)),
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{url}/health", timeout=2, trust_env=False).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 60, "the API to answer")
        body = httpx.get(
            f"{url}/api/v1/unified",
            params={"station": 1, "start": "2024-03-01T23:00:00Z", "end": "2024-03-02T01:00:00Z"},
            trust_env=False,
        ).json()
        assert body["count"] == 3
        listening = [
            line.split()[1]
            for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
            if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == port
        ]
        assert listening == [f"0100007F:{port:04X}"]  # 127.0.0.1 only
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    # uvicorn shuts down gracefully, then re-raises the signal it captured
    assert process.returncode in (0, -signal.SIGTERM), err[-2000:]
    assert "Shutting down" in err and "Finished server process" in err, err[-2000:]
