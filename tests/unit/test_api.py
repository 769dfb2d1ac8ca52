"""The HTTP API over the sink's files, with FastAPI's test client."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from services.common.stations import load_network
from services.sink.api import create_app
from services.sink.files import DailyFiles
from tests.sink_rows import unified_rows

pytestmark = pytest.mark.unit

START = datetime(2024, 3, 1, 23, 55, tzinfo=UTC)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    out = tmp_path_factory.mktemp("out")
    rows = unified_rows(1, START, 10) + unified_rows(2, START, 3, era5_t_eff_k=None)
    DailyFiles(out).write(rows)
    return TestClient(create_app(out, load_network(), max_days=2))


def test_health_and_stations(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "files": True}
    stations = {s["id"]: s for s in client.get("/api/v1/stations").json()}
    assert stations[1]["name"] == "mingo01" and stations[1]["has_data"]
    assert stations[3]["has_data"] is False and stations[3]["latitude"] == pytest.approx(19.0413)


def test_unified_json_across_midnight(client: TestClient) -> None:
    response = client.get(
        "/api/v1/unified",
        params={"station": 1, "start": "2024-03-01T23:57:00Z", "end": "2024-03-02T00:03:00Z"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 6 and len(body["rows"]) == 6
    assert body["rows"][0]["time"] == "2024-03-01T23:57:00Z"
    assert body["rows"][-1]["time"] == "2024-03-02T00:02:00Z"
    assert isinstance(body["rows"][0]["count_1234"], int)


def test_unified_columns_nulls_and_csv(client: TestClient) -> None:
    params = {
        "station": 2,
        "start": "2024-03-01T23:00:00",  # naive = UTC
        "end": "2024-03-02T01:00:00Z",
        "columns": "rate_total_hz,era5_t_eff_k",
    }
    body = client.get("/api/v1/unified", params=params).json()
    assert body["columns"] == ["station", "time", "rate_total_hz", "era5_t_eff_k"]
    assert [r["era5_t_eff_k"] for r in body["rows"]] == [None, None, None]
    csv = client.get("/api/v1/unified", params=params | {"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    frame = pd.read_csv(io.StringIO(csv.text))
    assert list(frame.columns) == body["columns"] and len(frame) == 3
    assert frame["rate_total_hz"].tolist() == pytest.approx(
        [r["rate_total_hz"] for r in body["rows"]]
    )


@pytest.mark.parametrize(
    ("params", "status", "detail"),
    [
        ({"station": 1, "start": "2024-03-02", "end": "2024-03-01"}, 400, "after start"),
        ({"station": 1, "start": "2024-01-01", "end": "2024-03-01"}, 400, "longer than 2 days"),
        ({"station": 1, "start": "2024-03-01", "end": "2024-03-02", "columns": "x"}, 400, "x"),
        ({"station": 7, "start": "2024-03-01", "end": "2024-03-02"}, 404, "unknown station"),
        ({"station": 12, "start": "2024-03-01", "end": "2024-03-02"}, 422, ""),
        ({"station": 1, "start": "yesterday", "end": "2024-03-02"}, 422, ""),
        ({"station": 1, "end": "2024-03-02"}, 422, ""),
        ({"station": 1, "start": "2024-03-01", "end": "2024-03-02", "format": "xml"}, 422, ""),
    ],
)
def test_clear_client_errors(
    client: TestClient, params: dict[str, object], status: int, detail: str
) -> None:
    response = client.get("/api/v1/unified", params=params)
    assert response.status_code == status
    assert detail in str(response.json()["detail"])


def test_openapi_documents_the_endpoints(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/health", "/api/v1/stations", "/api/v1/unified"} <= set(spec["paths"])
    names = {p["name"] for p in spec["paths"]["/api/v1/unified"]["get"]["parameters"]}
    assert names == {"station", "start", "end", "columns", "format"}


def test_api_binds_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.sink.settings import ApiSettings

    monkeypatch.delenv("MINGO_API_HOST", raising=False)
    assert ApiSettings().api_host == "127.0.0.1"


def test_empty_range_is_empty_not_an_error(client: TestClient) -> None:
    response = client.get(
        "/api/v1/unified", params={"station": 3, "start": "2024-03-01", "end": "2024-03-02"}
    )
    assert response.status_code == 200 and response.json()["rows"] == []
