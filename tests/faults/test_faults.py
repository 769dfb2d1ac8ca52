"""Fault suite (issue 8): the same simulated inputs under faults give the reference result.

Servers of its own (Apache Kafka and InfluxDB on free ports, so they can be stopped). A clean
reference run of 2 simulated stations x 1 day (with damage) through all five services; then the
same inputs under each fault, compared minute by minute with the reference: the files' rows and
the InfluxDB points must be equal in every value (the ``revision`` counter aside: a replay may
re-emit a minute), with no minute missing and none twice.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from infra import manage
from services.pipeline import SERVICES, Pipeline
from tests.pipeline_run import (
    STATIONS,
    Run,
    files_frame,
    influx_query,
    influx_unified,
    pipeline_run,
    private_servers,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    # three whole-day runs of the pipeline take far longer than the CI's budget for new tests
    pytest.mark.skipif(
        os.environ.get("MINGO_FAULTS") != "1",
        reason="the fault suite runs three simulated days (~10 min): set MINGO_FAULTS=1; "
        "results are recorded in docs/reliability.md",
    ),
]

RATE_HZ = 1.0
SPEED = 2400.0  #: a simulated day in 36 s
KILLS_PER_SERVICE = 5
KILL_SEED = 8


@dataclass(frozen=True)
class Outcome:
    """What a run left: the files' rows and the InfluxDB points, per station, by minute."""

    files: dict[int, pd.DataFrame]
    influx: dict[int, pd.DataFrame]


@dataclass(frozen=True)
class Servers:
    settings: manage.Settings
    bootstrap: str
    influx_url: str


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with private_servers(tmp_path_factory.mktemp("servers"), ("kafka", "influxdb")) as settings:
        env = manage.env_vars(settings=settings)
        yield Servers(settings, env["MINGO_KAFKA_BOOTSTRAP"], env["MINGO_INFLUX_URL"])


def _run(
    servers: Servers, out: Path, database: str, supervise: bool = False
) -> AbstractContextManager[Run]:
    return pipeline_run(
        servers.bootstrap, servers.influx_url, out, rate_hz=RATE_HZ, speed=SPEED,
        database=database, supervise=supervise,
    )  # fmt: skip


def _outcome(out: Path, url: str, database: str) -> Outcome:
    files = files_frame(out)
    by_station = {
        s: files[files["station"] == s].set_index("time").sort_index().drop(columns="revision")
        for s in STATIONS
    }
    influx = {s: influx_unified(url, s, database).set_index("time").sort_index() for s in STATIONS}
    return Outcome(by_station, influx)


@pytest.fixture(scope="module")
def reference(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    out = tmp_path_factory.mktemp("reference")
    with _run(servers, out, "reference") as run:
        run.wait_done()
    outcome = _outcome(out, servers.influx_url, "reference")
    for station in STATIONS:
        assert len(outcome.files[station]) > 1000, "the reference run holds most of the day"
    return outcome


def _assert_same(outcome: Outcome, reference: Outcome) -> None:
    for station in STATIONS:
        got, want = outcome.files[station], reference.files[station]
        assert not got.index.duplicated().any()
        missing = want.index.difference(got.index)
        extra = got.index.difference(want.index)
        assert missing.empty and extra.empty, (station, list(missing[:5]), list(extra[:5]))
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        columns = [c for c in reference.influx[station].columns if c != "revision"]
        pd.testing.assert_frame_equal(
            outcome.influx[station][columns], reference.influx[station][columns], check_exact=True
        )


def _kill_schedule(rng: random.Random, window_s: tuple[float, float]) -> list[tuple[float, str]]:
    """``KILLS_PER_SERVICE`` SIGKILLs per service at seeded random moments of the window."""
    kills = [s for s in SERVICES for _ in range(KILLS_PER_SERVICE)]
    rng.shuffle(kills)
    moments = sorted(rng.uniform(*window_s) for _ in kills)
    return list(zip(moments, kills, strict=True))


def _killer(pipeline: Pipeline, schedule: list[tuple[float, str]], done: list[str]) -> None:
    started = time.monotonic()
    for moment, service in schedule:
        time.sleep(max(0.0, started + moment - time.monotonic()))
        pipeline.signal(service, signal.SIGKILL)
        pipeline.start(service)  # restarted at once, as a supervisor would
        done.append(service)


def test_sigkill_of_every_service_at_random_moments(
    servers: Servers, reference: Outcome, tmp_path: Path
) -> None:
    schedule = _kill_schedule(random.Random(KILL_SEED), (5.0, 60.0))
    done: list[str] = []
    with _run(servers, tmp_path, "sigkill") as run:
        killer = threading.Thread(target=_killer, args=(run.pipeline, schedule, done))
        killer.start()
        killer.join()
        run.wait_done()
        restarts = dict(run.pipeline.restarts)
    assert restarts == dict.fromkeys(SERVICES, KILLS_PER_SERVICE), restarts
    _assert_same(_outcome(tmp_path, servers.influx_url, "sigkill"), reference)


def test_kafka_broker_stopped_and_restarted_mid_run(
    servers: Servers, reference: Outcome, tmp_path: Path
) -> None:
    # a service may exit on a lost broker; it is restarted, as a restart policy would
    with _run(servers, tmp_path, "kafka_restart", supervise=True) as run:
        # once unified minutes flow, the broker goes away for 20 s
        deadline = time.monotonic() + 240
        while not influx_query(servers.influx_url, "SHOW MEASUREMENTS", "kafka_restart"):
            assert time.monotonic() < deadline, "no data reached InfluxDB"
            run.pipeline.check_alive()
            time.sleep(1.0)
        manage.down(["kafka"], settings=servers.settings)
        time.sleep(20)
        manage.up(["kafka"], settings=servers.settings)
        run.wait_done()
    _assert_same(_outcome(tmp_path, servers.influx_url, "kafka_restart"), reference)
