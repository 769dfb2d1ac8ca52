"""Derived quantities against hand-computed values, and against the simulator's truth."""

from __future__ import annotations

import io
import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from services.common.stations import load_network
from services.reanalysis.cli import era5
from services.reanalysis.derive import DERIVED_COLUMNS, derive_hours
from services.reanalysis.points import level_column
from simulator.run import SimulationRequest, run_batch

pytestmark = pytest.mark.unit

#: A small synthetic profile: 10 levels up to 5 hPa, surface at 950 hPa (1000 hPa underground).
LEVELS_HPA = [1000.0, 800.0, 600.0, 400.0, 200.0, 100.0, 50.0, 20.0, 10.0, 5.0]
#: Layer of each level (midpoints, top at 0, the lowest level above ground down to 950). [hPa]
LAYERS_HPA = [0.0, 250.0, 200.0, 200.0, 150.0, 75.0, 40.0, 20.0, 7.5, 7.5]
TEMPS_K = [300.0, 280.0, 265.0, 245.0, 215.0, 210.0, 212.0, 218.0, 225.0, 235.0]
G0 = 9.80665


def _table(temps: list[float], sp_pa: float = 95000.0, z100: float = 16000.0 * G0) -> pd.DataFrame:
    row: dict[str, object] = {
        "time": pd.Timestamp("2024-03-01T00", tz="UTC"),
        "t2m": 273.15 + 12.5,
        "sp": sp_pa,
        level_column("z", 100.0): z100,
        "expver": "0001",
        "source_file": "a.nc,b.nc",
    }
    row |= {level_column("t", p): t for p, t in zip(LEVELS_HPA, temps, strict=True)}
    return pd.DataFrame([row])


def test_units_and_height_from_geopotential() -> None:
    (row,) = derive_hours(_table(TEMPS_K)).to_dict("records")
    assert list(row) == list(DERIVED_COLUMNS)
    assert row["temp_ground_c"] == pytest.approx(12.5)  # K -> degC
    assert row["surface_pressure_hpa"] == pytest.approx(950.0)  # Pa -> hPa
    assert row["temp_100hpa_c"] == pytest.approx(210.0 - 273.15)  # K -> degC
    assert row["height_100hpa_m"] == pytest.approx(16000.0)  # m2 s-2 / g0 -> m


def test_mass_weighted_temperature_by_hand() -> None:
    assert sum(LAYERS_HPA) == 950.0  # the column down to the surface
    expected = sum(t * dp for t, dp in zip(TEMPS_K, LAYERS_HPA, strict=True)) / 950.0
    (row,) = derive_hours(_table(TEMPS_K)).to_dict("records")
    assert row["t_mw_k"] == pytest.approx(expected, rel=1e-12)
    # by hand: 280·250 + 265·200 + 245·200 + 215·150 + 210·75 + 212·40 + 218·20 + 225·7.5
    # + 235·7.5 = 236290 hPa K over 950 hPa
    assert expected == pytest.approx(236290.0 / 950.0, rel=1e-12)


def test_effective_temperature_by_hand() -> None:
    def weight(p_hpa: float) -> float:  # production profile, Λ_N = 120, Λ_π = 160 g cm-2
        x = p_hpa * 100 / G0 / 10  # g cm-2
        return (math.exp(-x / 160) - math.exp(-x / 120)) / (1 / 120 - 1 / 160)

    w = [weight(p) * dp for p, dp in zip(LEVELS_HPA, LAYERS_HPA, strict=True)]
    expected = sum(wi * t for wi, t in zip(w, TEMPS_K, strict=True)) / sum(w)
    (row,) = derive_hours(_table(TEMPS_K)).to_dict("records")
    assert row["t_eff_k"] == pytest.approx(expected, rel=1e-12)
    # weighted towards the 100-200 hPa layers, so colder than T_MW
    assert 210 < row["t_eff_k"] < row["t_mw_k"]


def test_isothermal_column_has_that_temperature() -> None:
    (row,) = derive_hours(_table([240.0] * len(LEVELS_HPA))).to_dict("records")
    assert row["t_mw_k"] == pytest.approx(240.0)
    assert row["t_eff_k"] == pytest.approx(240.0)


def test_incomplete_profile_leaves_t_mw_and_t_eff_missing() -> None:
    table = _table(TEMPS_K).drop(columns=[level_column("t", 5.0), level_column("t", 10.0)])
    (row,) = derive_hours(table).to_dict("records")
    assert math.isnan(row["t_mw_k"]) and math.isnan(row["t_eff_k"])
    assert row["temp_100hpa_c"] == pytest.approx(210.0 - 273.15)


def test_hours_without_the_needed_fields_are_left_out() -> None:
    assert derive_hours(_table(TEMPS_K).drop(columns=["sp"])).empty
    table = pd.concat([_table(TEMPS_K), _table(TEMPS_K, sp_pa=np.nan)], ignore_index=True)
    assert len(derive_hours(table)) == 1


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    station = load_network().station(0)
    run_batch(
        SimulationRequest(
            out=out,
            stations=(station,),
            start=date(2024, 3, 1),
            days=2,
            rate_hz=0.05,
            acceptance_samples=20_000,
        )
    )
    return out


def test_simulator_netcdf_station_values_equal_the_truth(simulated: Path) -> None:
    files = sorted((simulated / "era5" / "mingo00").glob("*.nc"))
    assert len(files) == 4
    result = CliRunner().invoke(era5, ["derive", *map(str, files), "--station", "0"])
    assert result.exit_code == 0, result.output
    derived = pd.read_csv(io.StringIO(result.output))
    truth = pd.read_csv(simulated / "truth" / "mingo00" / "weather_hourly.csv")
    merged = derived.merge(truth, on="time", suffixes=("", "_truth"))
    assert len(merged) == len(derived) == 48
    assert (merged["expver"] == 1).all()  # read back as a number from CSV: 0001
    tolerances = {  # float32 storage of the files
        "surface_pressure_hpa": ("pressure_hpa", 1e-3),
        "temp_ground_c": ("temp_ground_c", 1e-3),
        "temp_100hpa_c": ("temp_100hpa_c", 1e-3),
        "height_100hpa_m": ("height_100hpa_m", 2e-3),
        "t_mw_k": ("t_mw_k", 1e-3),
        "t_eff_k": ("t_eff_k", 1e-3),
    }
    for column, (truth_column, tolerance) in tolerances.items():
        np.testing.assert_allclose(merged[column], merged[truth_column], atol=tolerance)
