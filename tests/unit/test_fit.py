"""Atmospheric fits (services/fit) against simulator truth.

Minute data come from ``simulator.minutes`` (Poisson counts from the simulator's rate model);
tolerances are the fits' own standard errors (2σ).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from services.alerts.detectors import detect_station
from services.common.stations import load_network
from services.fit.model import FitError, FitResult, Window, alert_windows, fit_all, hourly
from simulator.minutes import region_fractions, simulate_minutes
from simulator.station import StationSim, build_station_sim
from tests.alert_minutes import START as ALERT_START
from tests.alert_minutes import scenario, station_frame

BETA = -0.162
ALPHA_T = -0.28
START_S = int(pd.Timestamp("2024-03-01", tz="UTC").timestamp())


@pytest.fixture(scope="module")
def sim() -> StationSim:
    return build_station_sim(
        load_network().station(1),
        seed=11,
        rate_hz=8.0,
        beta_pct_per_hpa=BETA,
        alpha_t_pct_per_k=ALPHA_T,
        acceptance_samples=20_000,
    )


@pytest.mark.unit
def test_window_parse() -> None:
    w = Window.parse("2024-03-24/2024-03-26T12:00")
    assert w.start == pd.Timestamp("2024-03-24", tz="UTC")
    assert w.end == pd.Timestamp("2024-03-26 12:00", tz="UTC")
    with pytest.raises(ValueError, match="END must be after START"):
        Window.parse("2024-03-26/2024-03-24")
    with pytest.raises(ValueError, match="START/END"):
        Window.parse("2024-03-26")


@pytest.mark.unit
def test_hourly_counts_are_the_minute_counts(sim: StationSim) -> None:
    series = simulate_minutes(sim, START_S, 180, seed=1)
    hours = hourly(series.frame)
    assert len(hours) == 3
    counts = np.rint(series.frame["rate_total_hz"].to_numpy() * 60).reshape(3, 60).sum(axis=1)
    np.testing.assert_allclose(hours["counts_total"].to_numpy(), counts)
    assert (hours["live_s"] == 3600).all()


@pytest.mark.unit
def test_thirty_days_recover_injected_coefficients(sim: StationSim) -> None:
    series = simulate_minutes(sim, START_S, 30 * 1440, seed=3, fractions=region_fractions(sim))
    atm = sim.coefficients
    _, results = fit_all(series.frame, "teff", atm.p0_hpa, atm.teff_ref_k)
    for column, result in results.items():
        assert isinstance(result, FitResult), (column, result)
        assert result.hours_used == 720 and result.hours_excluded == 0
        # χ²/ndf of Poisson scatter: 1 within 3 sqrt(2/ndf)
        assert abs(result.chi2_ndf - 1) < 3 * np.sqrt(2 / result.ndf), column
    total = results["total"]
    assert isinstance(total, FitResult)
    assert abs(total.beta - BETA) < 2 * total.beta_err
    assert abs(total.coefficients["alpha_t"] - ALPHA_T) < 2 * total.errors["alpha_t"]
    # the errors are small enough for the recovery to mean something
    assert total.beta_err < 0.02 and total.errors["alpha_t"] < 0.06


@pytest.mark.unit
def test_exclusion_windows_and_pressure_only_bias(sim: StationSim) -> None:
    # a 3 % decrease over two days biases the fit unless its hours are excluded
    minutes = 10 * 1440
    dip = scenario(
        {
            "kind": "rate_change",
            "start": START_S + 4 * 86400,
            "end": START_S + 6 * 86400,
            "factor": 0.97,
        }
    )
    series = simulate_minutes(sim.with_scenario(dip), START_S, minutes, seed=4)
    atm = sim.coefficients
    window = Window(
        pd.Timestamp(START_S + 4 * 86400, unit="s", tz="UTC"),
        pd.Timestamp(START_S + 6 * 86400, unit="s", tz="UTC"),
    )
    _, kept = fit_all(series.frame, "teff", atm.p0_hpa, atm.teff_ref_k, columns=("total",))
    _, cut = fit_all(
        series.frame, "teff", atm.p0_hpa, atm.teff_ref_k, exclude=[window], columns=("total",)
    )
    kept_total, cut_total = kept["total"], cut["total"]
    assert isinstance(kept_total, FitResult) and isinstance(cut_total, FitResult)
    assert cut_total.hours_excluded == 48 and cut_total.hours_used == 192
    assert kept_total.chi2_ndf > 1 + 5 * np.sqrt(2 / kept_total.ndf)
    assert abs(cut_total.chi2_ndf - 1) < 3 * np.sqrt(2 / cut_total.ndf)
    assert abs(cut_total.beta - BETA) < 2 * cut_total.beta_err


@pytest.mark.unit
def test_fit_refuses_too_few_hours(sim: StationSim) -> None:
    series = simulate_minutes(sim, START_S, 120, seed=5)
    atm = sim.coefficients
    _, results = fit_all(series.frame, "teff", atm.p0_hpa, atm.teff_ref_k, columns=("total",))
    assert isinstance(results["total"], FitError)
    assert "2 usable hours" in str(results["total"])


@pytest.mark.unit
def test_alert_windows_select_the_quiet_hours(sim: StationSim) -> None:
    # the anomaly detectors find a 4 % two-day decrease; excluding their windows restores the fit
    days = 10
    dip = scenario(
        {
            "kind": "rate_change",
            "start": ALERT_START + pd.Timedelta(days=4),
            "end": ALERT_START + pd.Timedelta(days=6),
            "factor": 0.96,
        }
    )
    frame = station_frame(sim, days, seed=6, scenario=dip)
    alerts = detect_station(1, frame)
    assert {a.kind for a in alerts} == {"rate_excursion"}
    windows = alert_windows(alerts, ALERT_START + pd.Timedelta(days=days))
    atm = sim.coefficients
    _, kept = fit_all(frame, "teff", atm.p0_hpa, atm.teff_ref_k, columns=("total",))
    _, cut = fit_all(frame, "teff", atm.p0_hpa, atm.teff_ref_k, windows, columns=("total",))
    kept_total, cut_total = kept["total"], cut["total"]
    assert isinstance(kept_total, FitResult) and isinstance(cut_total, FitResult)
    assert kept_total.chi2_ndf > 1 + 5 * np.sqrt(2 / kept_total.ndf)
    assert cut_total.hours_excluded >= 40
    assert abs(cut_total.chi2_ndf - 1) < 3 * np.sqrt(2 / cut_total.ndf)
    assert abs(cut_total.beta - BETA) < 2 * cut_total.beta_err


@pytest.mark.unit
def test_duperier_and_pressure_methods(sim: StationSim) -> None:
    # no Duperier truth in the simulator (it modulates with T_eff): the 100 hPa height must come
    # out with the known negative sign (a higher production level, more muons decay) and the fit
    # must describe the data; the pressure-only fit has no temperature term
    series = simulate_minutes(sim, START_S, 30 * 1440, seed=3)
    atm = sim.coefficients
    _, results = fit_all(series.frame, "duperier", atm.p0_hpa, atm.teff_ref_k, columns=("total",))
    total = results["total"]
    assert isinstance(total, FitResult)
    assert set(total.coefficients) == {"alpha_h", "alpha_t"}
    assert total.coefficients["alpha_h"] < -3 * total.errors["alpha_h"]
    assert abs(total.chi2_ndf - 1) < 4 * np.sqrt(2 / total.ndf)
    _, results = fit_all(series.frame, "pressure", atm.p0_hpa, atm.teff_ref_k, columns=("total",))
    pressure_only = results["total"]
    assert isinstance(pressure_only, FitResult) and pressure_only.coefficients == {}
    assert pressure_only.ndf == total.ndf + 2
