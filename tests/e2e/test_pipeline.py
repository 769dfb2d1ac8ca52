"""The whole pipeline on Apache Kafka and InfluxDB: 2 simulated stations x 1 day, live.

All five services run as processes (``services.pipeline``, as ``mingo demo`` runs them). Mid-run
InfluxDB is stopped for 60 s. At the end InfluxDB must hold exactly one point per station-minute
that has data, with the values of the sink's files and of the HTTP API, and every minute
reconstructed upstream (the rates topic) must be there with its rate: nothing lost.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from infra import manage
from services.common.stations import load_network
from services.sink.api import create_app
from tests.pipeline_run import (
    DAY,
    STATIONS,
    files_frame,
    influx_query,
    influx_unified,
    latest_rates,
    pipeline_run,
    private_influxdb,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

OUTAGE_S = 60.0


def _points(url: str) -> int:
    series = influx_query(url, "SELECT count(live_s) FROM unified WHERE time > 0")
    return int(series[0]["values"][0][1]) if series else 0


def _equal(a: object, b: object) -> bool:
    missing_a = a is None or (isinstance(a, float) and math.isnan(a))
    missing_b = b is None or (isinstance(b, float) and math.isnan(b))
    if missing_a or missing_b:
        return missing_a and missing_b
    return a == b


def test_two_stations_one_day_through_all_services_with_an_influxdb_outage(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with private_influxdb(tmp_path / "influx") as (url, influx_settings):
        with pipeline_run(kafka_bootstrap, url, tmp_path / "run") as run:
            # the outage starts once the sink is writing, so it hits a flowing pipeline
            wait_for(lambda: _points(url) > 0, 240, "the first unified points in InfluxDB")
            manage.down(["influxdb"], settings=influx_settings)
            down_at = time.monotonic()
            while time.monotonic() - down_at < OUTAGE_S:
                run.pipeline.check_alive()
                time.sleep(1.0)
            manage.up(["influxdb"], settings=influx_settings)
            run.wait_done()
            rates = latest_rates(run.kafka)
        sink_log = (tmp_path / "run" / "logs" / "sink.log").read_text()
        # the outage reached the sink: it refused to commit and retried
        assert "store refused the batch" in sink_log
        files = files_frame(tmp_path / "run")
        app = TestClient(create_app(tmp_path / "run" / "unified", load_network()))
        for station in STATIONS:
            influx = influx_unified(url, station).set_index("time").sort_index()
            mine = files[files["station"] == station].set_index("time").sort_index()
            # exactly one point per station-minute: no minute twice, none missing, none extra
            assert not influx.index.duplicated().any()
            assert len(mine) > 0
            assert list(influx.index) == list(mine.index)
            # every minute reconstructed upstream arrived, with its rate
            upstream = {t: r for (s, t), r in rates.items() if s == station}
            assert set(upstream) <= set(mine.index)
            for minute, record in upstream.items():
                assert mine.at[minute, "rate_total_hz"] == record.rate_total_hz, minute
            # the InfluxDB fields equal the files' values
            for column in ("live_s", "rate_total_hz", "rate_p_corr_hz", "pressure_ext", "revision"):
                for minute in mine.index:
                    assert _equal(influx.at[minute, column], mine.at[minute, column]), (
                        station, column, minute,
                    )  # fmt: skip
            # and the API serves the same rows
            response = app.get(
                "/api/v1/unified",
                params={
                    "station": station,
                    "start": f"{DAY}T00:00:00Z",
                    "end": f"{DAY + timedelta(days=2)}T00:00:00Z",
                },
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["count"] == len(mine)
            api = pd.DataFrame(body["rows"])
            api["time"] = pd.to_datetime(api["time"], utc=True)
            api = api.set_index("time")
            assert list(api.index) == list(mine.index)
            for column in ("rate_total_hz", "rate_pt_corr_hz", "quality_flags"):
                for minute in mine.index:
                    assert _equal(api.at[minute, column], mine.at[minute, column]), (
                        station, column, minute,
                    )  # fmt: skip
