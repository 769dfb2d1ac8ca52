"""A whole-pipeline run for the end-to-end and fault tests: live simulation, five services.

Shared by ``tests/e2e`` and ``tests/faults``: the services run through the same harness as
``mingo demo`` (:mod:`services.pipeline`), on Apache Kafka and a private InfluxDB.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from infra import manage
from schemas.models import MinuteRates
from schemas.topics import RATES_MINUTE, TOPICS
from services.common.kafka import create_topics, delete_topics, make_admin, read_all
from services.common.settings import KafkaSettings
from services.common.stations import load_network
from services.demo import DemoRequest, LiveSimulation, read_unified
from services.pipeline import Pipeline, PipelineConfig, write_local_network
from services.sink.files import station_dir_name

STATIONS = (1, 2)
DAY = date(2024, 3, 1)
DATABASE = "mingo_e2e"


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open while chosen, so none repeats)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((manage.HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


@contextmanager
def private_servers(state_dir: Path, names: tuple[str, ...]) -> Iterator[manage.Settings]:
    """Servers of a test's own (the test stops and restarts them), on free ports."""
    kafka, controller, sasl, influx, rpc, sshd = free_ports(6)
    settings = replace(
        manage.Settings.from_env(),
        state_dir=state_dir,
        kafka_port=kafka,
        kafka_controller_port=controller,
        kafka_sasl_port=sasl,
        influx_port=influx,
        influx_rpc_port=rpc,
        sshd_port=sshd,
    )
    manage.up(names, settings=settings)
    try:
        yield settings
    finally:
        manage.down(names, settings=settings)


@contextmanager
def private_influxdb(state_dir: Path) -> Iterator[tuple[str, manage.Settings]]:
    """An InfluxDB of its own (the test stops it), on free ports; stopped at the end."""
    with private_servers(state_dir, ("influxdb",)) as settings:
        yield manage.env_vars(settings=settings)["MINGO_INFLUX_URL"], settings


@dataclass
class Run:
    """A prepared run: simulation, pipeline and where everything goes."""

    kafka: KafkaSettings
    out: Path
    simulation: LiveSimulation
    pipeline: Pipeline

    def station_dir(self, station: int) -> Path:
        """What the station PC holds (``dat/``, ``logs/``, the logbook)."""
        return self.out / "stations" / station_dir_name(station)

    def wait_done(self, timeout_s: float = 420.0) -> None:
        """Until the simulation ended, ingest took every file and every group caught up."""
        # the folders themselves, not the network file's: a test may serve them over SFTP
        folders = {s: self.station_dir(s) / "dat" for s in STATIONS}
        self.pipeline.wait_drained(
            ready=lambda: self.simulation.finished() and self.pipeline.ingested_all(folders),
            timeout_s=timeout_s,
        )


@contextmanager
def pipeline_run(
    kafka_bootstrap: str,
    influx: str | None,
    out: Path,
    *,
    rate_hz: float = 2.0,
    speed: float = 1200.0,
    damage: float = 0.001,
    seed: int = 3,
    database: str = DATABASE,
    supervise: bool = False,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[Run]:
    """Empty topics, a live simulation of 2 stations x 1 day, all services; stopped at exit.

    The stations are read from local folders (``out/stations/mingo0S``; the network file is
    ``out/network.yaml``), the sink writes to ``out/unified``, the services log to ``out/logs``;
    ``extra_env`` adds ``MINGO_*`` variables for every service.
    """
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    admin = make_admin(kafka)
    delete_topics(admin, [t.name for t in TOPICS])
    create_topics(admin)
    network = load_network()
    out.mkdir(parents=True, exist_ok=True)
    stations_dir = out / "stations"
    network_file = write_local_network(
        out / "network.yaml",
        [network.station(s) for s in STATIONS],
        {s: stations_dir / station_dir_name(s) for s in STATIONS},
    )
    config = PipelineConfig(
        kafka=kafka, network_file=network_file, era5_dir=stations_dir / "era5",
        out_dir=out / "unified", log_dir=out / "logs", run_id=f"e2e-{uuid.uuid4().hex[:8]}",
        influx_url=influx, influx_database=database, extra_env=dict(extra_env or {}),
    )  # fmt: skip
    request = DemoRequest(
        stations=list(STATIONS), start=DAY, days=1, hours=None, rate_hz=rate_hz, speed=speed,
        seed=seed, damage=damage, out=out,
    )  # fmt: skip
    simulation = LiveSimulation(request, network, stations_dir)
    simulation.start()
    try:
        with Pipeline(config, supervise=supervise) as pipeline:
            pipeline.start_all()
            yield Run(kafka, out, simulation, pipeline)
    finally:
        simulation.close()


def influx_query(url: str, q: str, database: str = DATABASE) -> list[dict[str, Any]]:
    """Series of an InfluxQL query on the test database (epoch seconds)."""
    response = httpx.get(
        f"{url}/query",
        params={"db": database, "q": q, "epoch": "s"},
        timeout=60,
        trust_env=False,
    )
    response.raise_for_status()
    result = response.json()["results"][0]
    if result.get("error", "").startswith("database not found"):
        return []  # the sink creates it when it starts
    assert "error" not in result, result
    return list(result.get("series", []))


def influx_unified(url: str, station: int, database: str = DATABASE) -> pd.DataFrame:
    """Every point of measurement ``unified`` of a station over the simulated day, by time."""
    start = datetime(DAY.year, DAY.month, DAY.day)
    q = (
        f"SELECT * FROM unified WHERE station='{station}' AND time >= '{start:%Y-%m-%d}T00:00:00Z'"
        f" AND time < '{start:%Y-%m-%d}T00:00:00Z' + 2d"
    )
    series = influx_query(url, q, database)
    if not series:
        return pd.DataFrame()
    [one] = series
    frame = pd.DataFrame(one["values"], columns=one["columns"])
    frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
    return frame


def latest_rates(kafka: KafkaSettings) -> dict[tuple[int, pd.Timestamp], MinuteRates]:
    """The newest minute record per station-minute on the rates topic."""
    latest: dict[tuple[int, pd.Timestamp], MinuteRates] = {}
    for message in read_all(kafka, RATES_MINUTE.name, max_wait_s=120):
        record = MinuteRates.model_validate_json(message.value())
        latest[(record.station, pd.Timestamp(record.time))] = record
    return latest


def files_frame(out: Path) -> pd.DataFrame:
    """The sink's Parquet files of the run."""
    return read_unified(out / "unified")


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(1.0)
