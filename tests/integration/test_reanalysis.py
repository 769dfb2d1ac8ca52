"""The reanalysis service on Apache Kafka: derive == topic, final ERA5 replaces ERA5T, idempotent.

Plus one test against the real Copernicus CDS, skipped unless CDS credentials are configured.
"""

from __future__ import annotations

import io
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner

from schemas.models import Era5Hour
from schemas.topics import STATUS
from services.common.kafka import create_topics, make_admin, read_all
from services.common.settings import KafkaSettings
from services.common.stations import load_network
from services.reanalysis.cds import make_fetcher, resolve_credentials
from services.reanalysis.cli import era5
from services.reanalysis.decode import open_era5
from services.reanalysis.planner import plan_requests
from services.reanalysis.points import point_table
from services.reanalysis.records import latest_by_hour
from tests.integration.conftest import TopicFactory

pytestmark = pytest.mark.integration

STATION = 0
FIELDS = ["temp_ground_c", "surface_pressure_hpa", "temp_100hpa_c", "height_100hpa_m"]
PROFILE = ["t_mw_k", "t_eff_k"]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from simulator.run import SimulationRequest, run_batch

    out = tmp_path_factory.mktemp("sim")
    run_batch(
        SimulationRequest(
            out=out,
            stations=(load_network().station(STATION),),
            start=date(2024, 3, 1),
            days=1,
            rate_hz=0.05,
            acceptance_samples=20_000,
        )
    )
    return out / "era5" / f"mingo0{STATION}"


def _write_era5t(final: Path, directory: Path) -> Path:
    """An ERA5T version of a simulator file: expver 0005, temperatures 0.7 K warmer."""
    with xr.open_dataset(final) as ds:
        ds = ds.load()
    for name in ("t2m", "t"):
        if name in ds:
            ds[name] = ds[name] + np.float32(0.7)
    ds["expver"] = ("valid_time", np.array(["0005"] * ds.sizes["valid_time"], dtype=object))
    target = directory / final.name.replace(".nc", "_era5t.nc")
    ds.to_netcdf(target, engine="netcdf4")
    return target


def _derive(files: list[Path]) -> pd.DataFrame:
    result = CliRunner().invoke(era5, ["derive", *map(str, files), "--station", str(STATION)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(io.StringIO(result.output), dtype={"expver": str})
    table["time"] = pd.to_datetime(table["time"], utc=True)
    return table.set_index("time")


def _publish(era5_dir: Path, topic: str) -> None:
    result = CliRunner().invoke(
        era5, ["publish", str(era5_dir), "--station", str(STATION), "--topic", topic]
    )
    assert result.exit_code == 0, result.output


def _topic(kafka: KafkaSettings, topic: str) -> list[Era5Hour]:
    messages = list(read_all(kafka, topic))
    assert {m.key() for m in messages} <= {str(STATION).encode()}
    return [Era5Hour.model_validate_json(m.value()) for m in messages]


def _assert_equal(records: dict[tuple[int, datetime], Era5Hour], derived: pd.DataFrame) -> None:
    assert len(records) == len(derived) == 24
    for (station, time), record in records.items():
        row = derived.loc[pd.Timestamp(time)]
        assert station == STATION
        assert record.expver == row["expver"]
        assert record.source_file == row["source_file"]
        for field in FIELDS + PROFILE:
            assert getattr(record, field) == pytest.approx(row[field], rel=1e-9, abs=1e-9)


@pytest.mark.slow
def test_published_hours_equal_derive_and_final_replaces_era5t(
    simulated: Path,
    tmp_path: Path,
    kafka_bootstrap: str,
    make_topic: TopicFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MINGO_KAFKA_BOOTSTRAP", kafka_bootstrap)
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    create_topics(make_admin(kafka), [STATUS])
    topic = make_topic(partitions=4, config={"retention.ms": "-1"})
    station_dir = tmp_path / "era5" / f"mingo0{STATION}"
    station_dir.mkdir(parents=True)
    finals = sorted(simulated.glob("*.nc"))

    # 1. ERA5T only
    era5t = [_write_era5t(f, station_dir) for f in finals]
    _publish(tmp_path / "era5", topic)
    first = _topic(kafka, topic)
    assert {r.revision for r in first} == {0} and {r.expver for r in first} == {"0005"}
    _assert_equal(latest_by_hour(first), _derive(era5t))

    # 2. final ERA5 arrives beside it: every hour is revised, and the revision is what counts
    for f in finals:
        (station_dir / f.name).write_bytes(f.read_bytes())
    _publish(tmp_path / "era5", topic)
    second = _topic(kafka, topic)
    assert len(second) == 48
    latest = latest_by_hour(second)
    assert {r.revision for r in latest.values()} == {1}
    assert {r.expver for r in latest.values()} == {"0001"}
    _assert_equal(latest, _derive(finals))
    assert _derive(finals)["temp_ground_c"].to_numpy() == pytest.approx(
        _derive(era5t)["temp_ground_c"].to_numpy() - 0.7, abs=1e-4
    )
    # within the partition the revision comes after the ERA5T record: last one wins too
    last_wins = {(r.station, r.time): r for r in second}
    assert last_wins == latest

    # 3. a restart on the same files publishes nothing
    _publish(tmp_path / "era5", topic)
    assert len(_topic(kafka, topic)) == 48


def _credentials_configured() -> bool:
    return (
        resolve_credentials(os.environ.get("CDSAPI_URL"), os.environ.get("CDSAPI_KEY")) is not None
    )


@pytest.mark.slow
@pytest.mark.cds
@pytest.mark.skipif(
    not _credentials_configured(),
    reason="needs the real Copernicus CDS: no key in CDSAPI_KEY or ~/.cdsapirc",
)
def test_real_cds_single_levels_for_one_day(tmp_path: Path) -> None:
    station = load_network().station(1)
    assert station.latitude is not None and station.longitude is not None
    day = datetime.now(UTC).date() - timedelta(days=30)
    plan = plan_requests(
        station.id, station.latitude, station.longitude, day, day, datetime.now(UTC).date()
    )
    fetcher = make_fetcher(
        resolve_credentials(os.environ.get("CDSAPI_URL"), os.environ.get("CDSAPI_KEY")),
        timeout_s=3600,
    )
    assert fetcher is not None
    path = fetcher.fetch(plan[0], tmp_path)
    table = point_table(open_era5(path), station.latitude, station.longitude)
    assert len(table) == 24
    assert table["t2m"].between(240, 320).all()  # K
    assert table["sp"].between(85_000, 100_000).all()  # Pa, Madrid at 657 m
