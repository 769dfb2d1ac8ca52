"""Grafana's dashboards against the real InfluxDB filled by the sink.

Grafana cannot run here, so each dashboard is loaded, its macros and template variables are
substituted the way Grafana does (``$timeFilter``, ``$__interval``, ``$station``), and every
InfluxQL target is run; each must return data, from known measurements, fields and tags.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer

from services.common.status import status_key, status_message
from tests.integration.test_sink import (
    RunningSink,
    count_points,
    drop_database,
    produce,
    query,
    wait_for,
)
from tests.sink_rows import unified_rows

pytestmark = pytest.mark.integration

GRAFANA = Path(__file__).resolve().parents[2] / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
MEASUREMENTS = {"unified", "pipeline_status"}
_RANGE = {"now-24h": timedelta(hours=24), "now-6h": timedelta(hours=6)}


def test_provisioning_names_the_dashboards_and_the_datasource() -> None:
    [source] = yaml.safe_load((GRAFANA / "provisioning/datasources/influxdb.yaml").read_text())[
        "datasources"
    ]
    assert source["type"] == "influxdb" and source["jsonData"]["dbName"]
    assert len(DASHBOARDS) == 4
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        uids.add(board["uid"])
        assert board["time"]["from"] in _RANGE
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] in (source["uid"], "-- Mixed --")
            refs = {t["refId"] for t in panel["targets"]}
            for target in panel["targets"]:
                if target["datasource"]["uid"] == "__expr__":  # server-side expression
                    used = set(re.findall(r"\$(\w+)", target["expression"])) or {
                        target["expression"]
                    }
                    assert used <= refs - {target["refId"]}, (path.name, target)
                else:
                    assert target["datasource"]["uid"] == source["uid"]
    assert len(uids) == 4


@pytest.fixture(scope="module")
def filled(
    kafka_bootstrap: str, influx_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A database filled by the sink: 2 stations x 3 hours up to now, and pipeline statuses."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topics = (
        f"test.grafana.unified.{uuid.uuid4().hex[:8]}",
        f"test.grafana.status.{uuid.uuid4().hex[:8]}",
    )
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in topics]).values():
        future.result(30)
    db = f"test_grafana_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(hours=3)
    rows = unified_rows(1, start, 180) + unified_rows(2, start, 180, quality_flags=2)
    produce(kafka_bootstrap, topics[0], rows)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    statuses = [
        status_message(
            "ingest",
            "host-a",
            "file_summary",
            station=station,
            source=source,
            file=f"{source}-file",
            newest_data_time=now - timedelta(minutes=5),
            lag_s=300.0,
            lines_total=1000,
            lines_valid=990,
            lines_rejected=10,
        )
        for station in (1, 2)
        for source in ("dat", "hv")
    ]
    statuses += [
        status_message("ingest", "host-a", "heartbeat"),
        status_message("ingest", "host-a", "source_error", station=2, source="sftp",
                       message="connection refused"),
    ]  # fmt: skip
    for status in statuses:
        producer.produce(topics[1], key=status_key(status), value=status.to_json_bytes())
    producer.flush(30)
    sink = RunningSink(
        kafka_bootstrap, influx_url, db, topics, tmp_path_factory.mktemp("out"), f"g-{db}"
    )
    try:
        wait_for(
            lambda: (
                count_points(influx_url, db, 1) == 180 and count_points(influx_url, db, 2) == 180
            ),
            90,
            "360 unified points",
        )
        wait_for(
            lambda: bool(
                query(influx_url, db, "SELECT count(lines_rejected) FROM pipeline_status")
            ),
            30,
            "statuses",
        )
    finally:
        sink.close()
    yield {"url": influx_url, "db": db, "now": now}
    drop_database(influx_url, db)
    for future in admin.delete_topics(list(topics)).values():
        future.result(30)


def substitute(text: str, start: datetime, end: datetime, variables: dict[str, str]) -> str:
    """Grafana's InfluxQL macros: time filter in epoch ms, an interval, template variables."""
    text = text.replace(
        "$timeFilter",
        f"time >= {int(start.timestamp() * 1000)}ms and time <= {int(end.timestamp() * 1000)}ms",
    )
    text = text.replace("$__interval", "5m")
    for name, value in variables.items():
        text = text.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert not re.search(r"\$[A-Za-z_{]", text), text  # only regex anchors ($/) remain
    return text


def _fields_of(url: str, db: str) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for series in query(url, db, "SHOW FIELD KEYS"):
        result[series["name"]] = {k for k, _t in series["values"]}
    for series in query(url, db, "SHOW TAG KEYS"):
        result[series["name"]] |= {k[0] for k in series["values"]}
    return result


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_dashboard_query_returns_data(filled: dict[str, Any], path: Path) -> None:
    url, db, now = filled["url"], filled["db"], filled["now"]
    board = json.loads(path.read_text())
    end = now + timedelta(minutes=1)
    start = end - _RANGE[board["time"]["from"]]
    variables: dict[str, str] = {}
    for variable in board["templating"]["list"]:
        series = query(url, db, substitute(variable["query"], start, end, variables))
        values = sorted(v[1] for s in series for v in s["values"])
        assert values == ["1", "2"], variable["name"]
        variables[variable["name"]] = values[0]
    known = _fields_of(url, db)
    targets = [
        t
        for panel in board["panels"]
        for t in panel["targets"]
        if t["datasource"]["uid"] != "__expr__"  # expressions compute on these queries' results
    ]
    assert targets
    for target in targets:
        influxql = substitute(target["query"], start, end, variables)
        [measurement] = re.findall(r'FROM "(\w+)"', influxql)
        assert measurement in MEASUREMENTS
        names = set(
            re.findall(r'"(\w+)"', influxql.split(" FROM ")[0] + influxql.split("WHERE")[1])
        )
        names -= {measurement, *(a for a in re.findall(r'AS "([^"]+)"', influxql))}
        assert names <= known[measurement], (path.stem, names - known[measurement])
        series = query(url, db, influxql)
        assert series, (path.stem, target["refId"], influxql)
        assert any(value is not None for s in series for row in s["values"] for value in row[1:]), (
            path.stem,
            influxql,
        )
        for s in series:
            if "station" in s.get("tags", {}):
                assert s["tags"]["station"] in {"1", "2"}
