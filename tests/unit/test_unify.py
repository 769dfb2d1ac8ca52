"""Unify: corrections, sampling, flags, revisions (hand-computed values) and simulator truth."""

from __future__ import annotations

import logging
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from schemas.columns import PLANES, REGIONS, TOPOLOGIES
from schemas.models import Era5Hour, LogReading
from services.common.stations import AtmosphereCoefficients, load_network
from services.unify.cli import _Rejects, station_hours, station_rates, station_readings
from services.unify.corrections import (
    efficiency_correction,
    pressure_correction,
    temperature_correction,
    three_of_four_efficiency,
)
from services.unify.flags import Flag, flag_names
from services.unify.join import JoinSettings, sample, to_rows, unify_frame
from services.unify.revisions import assign_revisions
from simulator.run import SimulationRequest, run_batch

T0 = datetime(2024, 3, 1, tzinfo=UTC)
COEFF = AtmosphereCoefficients(
    beta_pct_per_hpa=-0.2,
    beta_err_pct_per_hpa=0.0,
    p0_hpa=940.0,
    alpha_t_pct_per_k=-0.3,
    alpha_t_err_pct_per_k=0.0,
    teff_ref_k=220.0,
)


def test_pressure_correction_by_hand() -> None:
    rate, err = pressure_correction(
        np.array([10.0]), np.array([0.5]), np.array([950.0]), -0.2, 0.01, 940.0
    )
    factor = math.exp(0.02)
    assert rate[0] == pytest.approx(10.0 * factor, rel=1e-12)
    assert err[0] == pytest.approx(math.hypot(0.5 * factor, 10 * factor * 0.1 * 0.01), rel=1e-12)
    assert np.isnan(
        pressure_correction(np.ones(1), np.ones(1), np.array([np.nan]), -0.2, 0, 940)[0]
    )


def test_temperature_correction_by_hand() -> None:
    rate, err = temperature_correction(
        np.array([10.0]), np.array([0.5]), np.array([230.0]), -0.3, 0.05, 220.0
    )
    assert rate[0] == pytest.approx(10.0 / 0.97, rel=1e-12)
    expected = math.hypot(0.5 / 0.97, 10.0 / 0.97 * 10 / 100 * 0.05 / 0.97)
    assert err[0] == pytest.approx(expected, rel=1e-12)


def test_three_of_four_efficiency_by_hand() -> None:
    e, e_err = three_of_four_efficiency(np.full((1, 4), 0.9), np.full((1, 4), 0.01))
    assert e[0] == pytest.approx(0.9**4 + 4 * 0.9**3 * 0.1, rel=1e-12)  # 0.9477
    # dE/de_k = 3 e^2 - 3 e^3 = 0.243 for every plane
    assert e_err[0] == pytest.approx(2 * 0.243 * 0.01, rel=1e-12)
    rate, err = efficiency_correction(np.array([9.477]), np.array([0.3]), e, e_err)
    assert rate[0] == pytest.approx(10.0, rel=1e-12)
    assert err[0] == pytest.approx(math.hypot(0.3 / 0.9477, 9.477 * e_err[0] / 0.9477**2))


def test_sample_interpolates_within_the_gap_only() -> None:
    s = sample(
        np.array([0.0, 600.0, 1800.0]),
        np.array([0.0, 6.0, 18.0]),
        np.array([300.0, 600.0, 1500.0, -10.0, 1900.0]),
        900.0,
    )
    np.testing.assert_allclose(s.value[:2], [3.0, 6.0])
    assert np.isnan(s.value[2:]).all()  # 1200 s gap, before the first, after the last
    assert s.exact.tolist() == [False, True, False, False, False]


def test_flag_names() -> None:
    mask = int(Flag.ENV_MISSING | Flag.ERA5_PENDING)
    assert flag_names(mask) == ["ENV_MISSING", "ERA5_PENDING"]
    with pytest.raises(ValueError, match="not quality flags"):
        flag_names(1 << 40)


def _rates(minutes: int, rate_hz: float = 10.0) -> list[dict[str, Any]]:
    rows = []
    for k in range(minutes):
        row: dict[str, Any] = {"station": 1, "time": T0 + timedelta(minutes=k), "live_s": 60.0}
        row |= {f"count_{t}": 0 for t in TOPOLOGIES}
        for region in (*REGIONS, "total"):
            row[f"rate_{region}_hz"] = rate_hz
            row[f"rate_{region}_err_hz"] = math.sqrt(rate_hz / 60.0)
        row |= {f"eff_{p}": 0.9 for p in PLANES} | {f"eff_{p}_err": 0.0 for p in PLANES}
        row |= {"q_event_mean": 50.0, "rejected_events": 0, "calibration_version": "v"}
        rows.append(row)
    return rows


def _ext(minute: float, pressure: float, line: int, out: tuple[str, ...] = ()) -> LogReading:
    return LogReading(
        station=1,
        source="sensors_ext",
        time=T0 + timedelta(minutes=minute),
        values={"temperature_ext": 10.0, "rh_ext": 50.0, "pressure_ext": pressure},
        units={"temperature_ext": "degC", "rh_ext": "%", "pressure_ext": "hPa"},
        out_of_range=list(out),
        source_file="sensors_bus0_2024-03-01.log",
        line=line,
        reading_id=f"1/sensors_bus0_2024-03-01.log/{line}",
    )


def _hour(hour: int, teff: float | None, sp: float = 930.0, expver: str = "0001") -> Era5Hour:
    return Era5Hour(
        station=1,
        time=T0 + timedelta(hours=hour),
        temp_ground_c=5.0,
        surface_pressure_hpa=sp,
        temp_100hpa_c=-55.0,
        height_100hpa_m=16000.0,
        t_eff_k=teff,
        expver=expver,
        source_file="x.nc",
    )


def test_unify_frame_by_hand() -> None:
    rates = _rates(62)
    readings = [_ext(0, 940.0, 1), _ext(15, 941.5, 2), _ext(30, 2000.0, 3, ("pressure_ext",))]
    hours = [_hour(0, 220.0), _hour(1, 226.0, expver="0005")]
    frame = unify_frame(rates, readings, hours, COEFF, JoinSettings(log_max_gap_s=1800))
    first = frame.iloc[0]
    # pressure at the middle of minute 0: 940 + 1.5 * 30/900
    assert first["pressure_ext"] == pytest.approx(940.05)
    p_rate = 10.0 * math.exp(0.2 / 100 * 0.05)
    assert first["rate_p_corr_hz"] == pytest.approx(p_rate, rel=1e-12)
    # T_eff at 30 s: 220 + 6 * 30/3600
    assert first["era5_t_eff_k"] == pytest.approx(220.05)
    assert first["rate_pt_corr_hz"] == pytest.approx(p_rate / (1 - 0.003 * 0.05), rel=1e-12)
    assert first["rate_eff_corr_hz"] == pytest.approx(10.0 / 0.9477, rel=1e-12)
    # ENV_MISSING: the other log families have no readings at all
    expected = ["ENV_MISSING", "ENV_INTERPOLATED", "ERA5_INTERPOLATED", "ERA5_PRELIMINARY"]
    assert first["quality"] == expected
    # minute 20: the pressure comes from an out-of-range reading -> ERA5 surface pressure
    m20 = frame.iloc[20]
    assert m20["quality_flags"] & Flag.ENV_OUT_OF_RANGE
    assert m20["quality_flags"] & Flag.PRESSURE_FROM_ERA5
    assert m20["rate_p_corr_hz"] == pytest.approx(10.0 * math.exp(0.2 / 100 * -10.0))
    # minute 40: no reading after 30 min -> missing; ERA5 pressure still there
    assert np.isnan(frame.iloc[40]["pressure_ext"])
    assert frame.iloc[40]["quality_flags"] & Flag.ENV_MISSING
    # minute 60 (middle 01:00:30) is after the newest hour: pending, never extrapolated
    last = frame.iloc[60]
    assert last["quality_flags"] & Flag.ERA5_PENDING
    assert np.isnan(last["era5_t_eff_k"]) and np.isnan(last["rate_pt_corr_hz"])
    assert last["quality_flags"] & Flag.PRESSURE_MISSING
    rows = to_rows(frame)
    assert rows[60].rate_pt_corr_hz is None and rows[0].quality == first["quality"]


def test_unify_frame_teff_missing_and_highest_era5_revision() -> None:
    hours = [_hour(0, None), _hour(1, None), _hour(1, 230.0).model_copy(update={"revision": 1})]
    frame = unify_frame(_rates(2), [], hours, COEFF)
    flags = frame["quality_flags"].to_numpy()
    assert (flags & int(Flag.TEFF_MISSING)).all()
    assert (flags & int(Flag.PRESSURE_FROM_ERA5)).all()


def test_assign_revisions() -> None:
    rows = to_rows(unify_frame(_rates(3), [], [_hour(0, 220.0)], COEFF))
    assert [r.revision for r in assign_revisions(rows, [])] == [0, 0, 0]
    assert assign_revisions(rows, rows) == []
    later = to_rows(unify_frame(_rates(3), [], [_hour(0, 220.0), _hour(1, 222.0)], COEFF))
    bumped = assign_revisions(later, [rows[0], rows[1].model_copy(update={"revision": 4}), rows[2]])
    assert [r.revision for r in bumped] == [1, 5, 1]


def _hourly_chi2(frame: pd.DataFrame, column: str) -> tuple[float, int]:
    """χ² and ndf of a constant fitted to the hourly rates of ``column`` (Poisson errors)."""
    live = frame["live_s"].to_numpy()
    hour = frame["time"].dt.floor("h")
    counts = (frame["rate_total_hz"] * live).groupby(hour).sum()
    rate = (frame[column] * live).groupby(hour).sum() / pd.Series(live).groupby(
        hour.values
    ).sum().values
    err = rate / np.sqrt(counts)
    w = 1.0 / err**2
    mean = float((rate * w).sum() / w.sum())
    return float((((rate - mean) / err) ** 2).sum()), len(rate) - 1


@pytest.fixture(scope="module")
def simulated_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("sim")
    request = SimulationRequest(
        out=out,
        stations=(load_network().station(1),),
        start=date(2024, 3, 1),
        rate_hz=5.0,
        seed=11,
        beta_pct_per_hpa=-2.0,
        alpha_t_pct_per_k=-3.0,
        acceptance_samples=50_000,
    )
    return out, run_batch(request)


@pytest.mark.slow
def test_simulated_day_is_flat_after_correction(simulated_day: tuple[Path, dict[str, Any]]) -> None:
    out, truth = simulated_day
    params = truth["stations"]["1"]["parameters"]
    station = load_network().station(1)
    coefficients = AtmosphereCoefficients(
        beta_pct_per_hpa=params["beta_pct_per_hpa"],
        p0_hpa=params["p0_hpa"],
        alpha_t_pct_per_k=params["alpha_t_pct_per_k"],
        teff_ref_k=params["teff_ref_k"],
    )
    rejects = _Rejects(1)
    rates = station_rates(station, out / "mingo01", rejects, lambda: None)
    readings = station_readings(station, out / "mingo01", rejects)
    hours = station_hours(station, out / "era5", rejects)
    frame = unify_frame(rates, readings, hours, coefficients)
    frame = frame[frame["time"] < pd.Timestamp("2024-03-01T23:00Z")]  # hour 23: ERA5 pending
    assert frame["rate_pt_corr_hz"].notna().all()
    chi2, ndf = _hourly_chi2(frame, "rate_pt_corr_hz")
    tolerance = 3 * math.sqrt(2 / ndf)  # 3 σ of χ²/ndf
    assert abs(chi2 / ndf - 1) < tolerance, chi2 / ndf
    logging.getLogger(__name__).info("hourly chi2/ndf %.3f (ndf %d)", chi2 / ndf, ndf)
    raw_chi2, _ = _hourly_chi2(frame, "rate_total_hz")
    assert raw_chi2 / ndf > 1 + tolerance, raw_chi2 / ndf  # the modulation is visible
