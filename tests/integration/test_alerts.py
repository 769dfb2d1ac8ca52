"""The alerts service on Apache Kafka + InfluxDB: unified minutes in, alerts and annotations out;
and ``mingo fit`` reading its rows from InfluxDB.

Two simulated days of one station (tests/alert_minutes.py) with an HV trip and a 2-hour data gap
are produced to a private topic as unified minutes; the service runs until idle; the alerts topic
must hold exactly their three alerts (the trip drops HV and current), InfluxDB their annotation
points (found by every dashboard's annotation query), and ``mingo alerts`` must list them.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from confluent_kafka import Producer

from schemas.models import Coefficients
from schemas.topics import station_key
from services.alerts.cli import alerts as alerts_command
from services.alerts.service import DETECTOR_COLUMNS, AlertsOptions, latest_alerts, run_alerts
from services.common.coefficients import latest_record
from services.common.kafka import read_all
from services.common.runtime import RunBounds, StopFlag
from services.common.settings import KafkaSettings
from services.common.stations import load_network
from services.fit.cli import fit as fit_command
from services.fit.model import FitResult, fit_all
from services.fit.sources import FIT_COLUMNS, read_files, read_influx
from services.sink.files import DailyFiles
from services.sink.influx import InfluxTarget
from services.sink.lineprotocol import encode_unified
from services.sink.service import make_writer
from simulator.station import build_station_sim
from tests.alert_minutes import START, scenario, station_frame
from tests.integration.conftest import TopicFactory
from tests.integration.test_grafana import DASHBOARDS, substitute
from tests.integration.test_sink import query
from tests.sink_rows import unified_row

pytestmark = pytest.mark.integration


def rows_of(frame: pd.DataFrame) -> list[Any]:
    columns = [c for c in (*FIT_COLUMNS, *DETECTOR_COLUMNS) if c in frame]
    rows = []
    for record in frame.to_dict("records"):
        values = {c: float(record[c]) for c in columns if np.isfinite(record[c])}
        rows.append(unified_row(1, record["time"].to_pydatetime(), **values))
    return rows


def test_service_emits_alerts_and_annotations(
    kafka_bootstrap: str, influx_url: str, make_topic: TopicFactory, monkeypatch: Any
) -> None:
    trip = START + pd.Timedelta(hours=30, minutes=7)
    gap = (START + pd.Timedelta(hours=40), START + pd.Timedelta(hours=42))
    sim = build_station_sim(load_network().station(1), seed=7, acceptance_samples=20_000)
    events = scenario(
        {"kind": "hv_trip", "station": 1, "polarity": "pos", "start": trip},
        {"kind": "data_gap", "station": 1, "start": gap[0], "end": gap[1]},
    )
    frame = station_frame(sim, 2, seed=2, scenario=events)
    unified, alerts_topic = make_topic(partitions=2), make_topic(partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for row in rows_of(frame):
        producer.produce(unified, key=station_key(row.station), value=row.to_json_bytes())
    assert producer.flush(30) == 0

    db = f"test_alerts_{uuid.uuid4().hex[:10]}"
    writer = make_writer(InfluxTarget(url=influx_url, database=db), create_database=True)
    options = AlertsOptions(
        group_id=f"test-alerts-{uuid.uuid4().hex[:8]}",
        unified_topic=unified,
        alerts_topic=alerts_topic,
        poll_timeout_s=0.5,
        wall_clock=False,
    )
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    try:
        service = run_alerts(
            kafka, writer, options, StopFlag(), RunBounds(stop_when_idle=True, max_seconds=120)
        )
        assert service.alerts_emitted >= 3
        found = latest_alerts(list(read_all(kafka, alerts_topic)))
        # the trip drops the HV and its current: two alerts
        kinds = ["current_out_of_band", "data_stopped", "hv_out_of_band"]
        assert sorted(a.kind for a in found) == kinds
        by_kind = {a.kind: a for a in found}
        assert by_kind["data_stopped"].start == gap[0].to_pydatetime()
        assert by_kind["data_stopped"].end == gap[1].to_pydatetime()
        assert by_kind["hv_out_of_band"].end is None  # the HV stays off to the end
        assert abs(by_kind["hv_out_of_band"].detected - trip.to_pydatetime()) <= pd.Timedelta(
            minutes=25
        )

        response = httpx.get(
            f"{influx_url}/query",
            params={"db": db, "q": 'SELECT "kind", "text", "end_s" FROM "alerts"', "epoch": "s"},
            timeout=10,
            trust_env=False,
        )
        [series] = response.json()["results"][0]["series"]
        points = {v[1]: v for v in series["values"]}
        assert set(points) == set(kinds)
        assert points["data_stopped"][0] == int(gap[0].timestamp())
        assert points["data_stopped"][3] == int(gap[1].timestamp())

        # every dashboard's annotation query finds the alerts (Grafana's macros substituted)
        span = (START.to_pydatetime(), (START + pd.Timedelta(days=2)).to_pydatetime())
        boards = [json.loads(p.read_text()) for p in DASHBOARDS]
        queries = [a["query"] for b in boards for a in b["annotations"]["list"]]
        assert len(queries) == 3
        for annotation in queries:
            series = query(influx_url, db, substitute(annotation, *span, {"station": "1"}))
            texts = [row[series[0]["columns"].index("text")] for row in series[0]["values"]]
            assert len(texts) == 3 and any("no data for 120 min" in t for t in texts)

        monkeypatch.setenv("MINGO_KAFKA_BOOTSTRAP", kafka_bootstrap)
        monkeypatch.setenv("MINGO_ALERTS_TOPIC", alerts_topic)
        listed = CliRunner().invoke(alerts_command, ["--station", "1"], catch_exceptions=False)
        assert listed.exit_code == 0, listed.output
        assert "hv_out_of_band" in listed.output and "data_stopped" in listed.output
        assert "ongoing" in listed.output
    finally:
        writer.close()
        httpx.post(
            f"{influx_url}/query", data={"q": f'DROP DATABASE "{db}"'}, timeout=10, trust_env=False
        )


def test_fit_reads_the_same_rows_from_influxdb_as_from_files(
    influx_url: str, tmp_path: Any
) -> None:
    """``mingo fit --source influx`` reads what the sink wrote: same fit as from the files."""
    sim = build_station_sim(load_network().station(1), seed=3, acceptance_samples=20_000)
    frame = station_frame(sim, 3, seed=5)
    rows = rows_of(frame)
    db = f"test_fit_{uuid.uuid4().hex[:10]}"
    writer = make_writer(InfluxTarget(url=influx_url, database=db), create_database=True)
    try:
        writer.write([line for line in map(encode_unified, rows) if line is not None])
        DailyFiles(tmp_path).write(rows)
        span = (START.to_pydatetime(), (START + pd.Timedelta(days=3)).to_pydatetime())
        from_influx = read_influx(InfluxTarget(url=influx_url, database=db), 1, *span)
        from_files = read_files(tmp_path, 1, *span)
        assert len(from_influx) == len(from_files) == 3 * 1440
        atm = sim.coefficients
        fits = [
            fit_all(f, "teff", atm.p0_hpa, atm.teff_ref_k, columns=("total",))[1]["total"]
            for f in (from_influx, from_files)
        ]
        assert isinstance(fits[0], FitResult) and isinstance(fits[1], FitResult)
        assert fits[0].beta == pytest.approx(fits[1].beta, rel=1e-9)
        assert fits[0].hours_used == fits[1].hours_used == 72
    finally:
        writer.close()
        httpx.post(
            f"{influx_url}/query", data={"q": f'DROP DATABASE "{db}"'}, timeout=10, trust_env=False
        )


def test_fit_publishes_its_record(
    kafka_bootstrap: str, make_topic: TopicFactory, tmp_path: Any, monkeypatch: Any
) -> None:
    """``mingo fit --write --publish``: the record file and the same record on the topic."""
    sim = build_station_sim(load_network().station(1), seed=3, acceptance_samples=20_000)
    out = tmp_path / "out"
    DailyFiles(out).write(rows_of(station_frame(sim, 2, seed=5)))
    topic = make_topic(partitions=4)
    monkeypatch.setenv("MINGO_KAFKA_BOOTSTRAP", kafka_bootstrap)
    args = ["--station", "1", "--start", "2024-03-01", "--end", "2024-03-03", "--input", str(out)]
    args += ["--write", "--publish", "--topic", topic, "--records", str(tmp_path / "rec")]
    args += ["--png", str(tmp_path / "fit.png")]
    result = CliRunner().invoke(fit_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [message] = list(read_all(KafkaSettings(bootstrap=kafka_bootstrap), topic))
    assert message.key() == b"1"
    published = Coefficients.model_validate_json(message.value() or b"")
    assert published == latest_record(tmp_path / "rec", 1)
