"""Reconstruction against the simulator's truth (DOMAIN.md §5, issue 3 "Must show").

A day of one station at 2 Hz keeps the unit run short (~20 s); the slow test repeats every
check on 2 stations x 1 day at 8 Hz. Tolerances are statistical and stated where used.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from reconstruct_truth import (
    Reconstructed,
    concat,
    fit_cos_power,
    folded_truth_regions,
    reconstruct_station,
    simulate,
    slope_resolution,
    vertical_efficiency,
)

pytestmark = pytest.mark.unit

RATE_TOPOLOGIES = ["1234", "123", "124", "134", "234"]


def _check_all(rec: Reconstructed) -> None:
    _check_efficiencies(rec)
    _check_total_rate(rec)
    # the 2 ± 0.2: 2σ at 8 Hz
    _check_cos_power(rec, tolerance=0.2)
    _check_regions(rec)
    _check_x_residuals(rec)
    _check_calibration(rec)


def _check_efficiencies(rec: Reconstructed) -> None:
    # Like with like. The injected ε is for vertical tracks; a track at θ crosses 1/cosθ more gas
    # and is detected with 1 - (1 - ε)^(1/cosθ), so the 3-of-4 ratio measures that probability
    # averaged over the tracks that entered the denominator: tracks with the other three planes
    # hit whose path crosses plane k inside the fiducial area (the truth positions select them).
    # The trigger does not bias the 3-of-4 ratio: with pairs 12, 23, 34, 13 every set of three
    # planes already holds a trigger pair, so whether plane k fired never decides the trigger.
    # Tolerance: the issue's ±0.01 (the binomial error is ~0.002 at 2 Hz, ~0.001 at 8 Hz).
    eff = np.array(rec.params["detector"]["efficiency"])
    full = sum(r.tally.full_fid.sum(axis=0) for r in rec.results)
    missing = sum(r.tally.missing_fid.sum(axis=0) for r in rec.results)
    measured = full / (full + missing)
    truth, hit_mask = rec.truth, rec.truth["hit_mask"].to_numpy()
    cos_theta = np.cos(np.radians(truth["theta_deg"].to_numpy()))
    fx, fy = rec.station.reconstruction.fiducial_half_mm
    for p in range(4):
        bit = 1 << p
        inside = (np.abs(truth[f"x_p{p + 1}"].to_numpy()) < fx) & (
            np.abs(truth[f"y_p{p + 1}"].to_numpy()) < fy
        )
        selected = ((hit_mask | bit) == 15) & inside
        predicted = np.mean(1 - (1 - eff[p]) ** (1 / cos_theta[selected]))
        assert abs(measured[p] - predicted) <= 0.01, (p + 1, measured[p], predicted, eff[p])


def _check_total_rate(rec: Reconstructed) -> None:
    # 3- and 4-plane rate over the day vs the truth count over the truth live time; 3σ Poisson.
    live = sum(r["live_s"] for r in rec.rows)
    counts = sum(r["rate_total_hz"] * r["live_s"] for r in rec.rows)
    true_count = np.isin(rec.truth["planes_hit"], RATE_TOPOLOGIES).sum()
    sigma = np.sqrt(true_count) / rec.truth_live_s
    assert abs(counts / live - true_count / rec.truth_live_s) < 3 * sigma


def _check_cos_power(rec: Reconstructed, tolerance: float | None = None) -> None:
    # ML fit of n on the reconstructed x slopes of 4-plane tracks with the analytic acceptance,
    # the vertical efficiencies (from the measured 3-of-4 ones) and the slope resolution measured
    # on the tracks' own residuals (see fit_cos_power). n is weakly constrained by the narrow
    # 4-plane acceptance: σ(n) ≈ 0.2 at 2 Hz (2·10⁴ tracks), ≈ 0.1 per station-day at 8 Hz.
    # Without a tolerance, 3σ of the fit's own statistical error.
    mask, measured = concat(rec, "mask"), _measured_eff(rec)
    theta, phi = concat(rec, "theta"), concat(rec, "phi")
    four = mask == 15
    slope_x = np.tan(np.radians(theta[four])) * np.cos(np.radians(phi[four]))
    d = rec.params["detector"]
    area = d["active_area_mm"]
    depth = float(np.ptp(d["z_mm"]))
    efficiency = vertical_efficiency(measured, np.cos(np.radians(theta[four])))
    sigma_slope = slope_resolution(concat(rec, "x")[four], np.array(d["z_mm"]))
    n, sigma = fit_cos_power(
        slope_x, efficiency, area["x_half"], area["y_half"], depth, sigma_slope
    )
    assert sigma < 0.3, sigma
    assert abs(n - 2.0) <= (3 * sigma if tolerance is None else tolerance), (n, sigma)


def _measured_eff(rec: Reconstructed) -> np.ndarray:
    full = sum(r.tally.full_fid.sum(axis=0) for r in rec.results)
    missing = sum(r.tally.missing_fid.sum(axis=0) for r in rec.results)
    return np.asarray(full / (full + missing))


def _check_regions(rec: Reconstructed) -> None:
    # Region fractions of the 3/4-plane events vs the truth Monte Carlo folded through the strips
    # (see folded_truth_regions); σ = binomial sqrt(f(1-f)/N) per region, 3σ.
    region = concat(rec, "region")
    ok = region >= 0
    n = int(ok.sum())
    z = np.array(rec.params["detector"]["z_mm"])
    folded = folded_truth_regions(rec.truth[ok], concat(rec, "mask")[ok], z)
    f_rec = np.bincount(region[ok], minlength=13) / n
    f_true = np.bincount(folded, minlength=13) / n
    sigma = np.sqrt(f_true * (1 - f_true) / n)
    assert np.all(np.abs(f_rec - f_true) < 3 * sigma), (f_rec - f_true) / sigma


def _check_x_residuals(rec: Reconstructed) -> None:
    # x from calibrated T_dif vs the true crossing point: RMS ≤ 15 mm (expected ~5 mm from the
    # 34 ps time jitter x 199.86 mm/ns / √2).
    x, hit_mask = concat(rec, "x"), rec.truth["hit_mask"].to_numpy()
    for p in range(4):
        ok = np.isfinite(x[:, p]) & ((hit_mask >> p) & 1 > 0)
        residual = x[ok, p] - rec.truth[f"x_p{p + 1}"].to_numpy()[ok]
        assert np.sqrt(np.mean(residual**2)) <= 15.0


def _injected(rec: Reconstructed) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = rec.params["detector"]
    off, ped = d["t_offset_ns"], d["q_pedestal_ns"]
    planes, strips = range(1, 5), range(1, 5)
    tf = np.array([[off[f"P{p}_T_F_{s}"] for s in strips] for p in planes])
    tb = np.array([[off[f"P{p}_T_B_{s}"] for s in strips] for p in planes])
    q = np.array([[[ped[f"P{p}_Q_{side}_{s}"] for side in "FB"] for s in strips] for p in planes])
    return (tb - tf) / 2, (tb + tf) / 2, q


def _check_calibration(rec: Reconstructed) -> None:
    tdif, tsum, pedestal = _injected(rec)
    cal = rec.results[-1].calibration  # pooled over the day
    # T_dif plateau centre: quantile midpoints of ~10⁴ hits per strip are good to a few ps; 20 ps
    # (4 mm) leaves room for the edge shape.
    assert np.abs(cal.tdif_offset_ns - tdif).max() < 0.02
    # T_sum offsets are relative (gauge Σ = 0): compare after removing the common constant.
    # Pair-difference least squares on ~10⁴ tracks: ~5 ps; tolerance 20 ps.
    diff = cal.tsum_offset_ns - tsum
    assert np.abs(diff - diff.mean()).max() < 0.02
    # The pedestal edge sits one threshold width above the injected pedestal for every channel:
    # 28 ns·ln(1 + 60 fC / 40 fC) = 25.66 ns (simulator charge model). The 1 ns charge jitter
    # smears the edge; every channel within 1 ns of it.
    edge = 28.0 * np.log1p(60.0 / 40.0)
    assert np.abs(cal.pedestal_ns - pedestal - edge).max() < 1.0


@pytest.fixture(scope="module")
def day_2hz(tmp_path_factory: pytest.TempPathFactory) -> Reconstructed:
    out = tmp_path_factory.mktemp("sim2hz")
    truth = simulate(out, (0,), 2.0)
    return reconstruct_station(out, truth, 0)


def test_efficiencies_match_injected(day_2hz: Reconstructed) -> None:
    _check_efficiencies(day_2hz)


def test_total_rate_matches_truth(day_2hz: Reconstructed) -> None:
    _check_total_rate(day_2hz)


def test_cos_power_exponent(day_2hz: Reconstructed) -> None:
    _check_cos_power(day_2hz)


def test_region_fractions_match_folded_truth(day_2hz: Reconstructed) -> None:
    _check_regions(day_2hz)


def test_x_residuals(day_2hz: Reconstructed) -> None:
    _check_x_residuals(day_2hz)


def test_calibration_recovers_injected_constants(day_2hz: Reconstructed) -> None:
    _check_calibration(day_2hz)


@pytest.mark.slow
def test_two_stations_one_day_8hz(tmp_path: Path) -> None:
    truth = simulate(tmp_path, (0, 1), 8.0)
    for station in (0, 1):
        _check_all(reconstruct_station(tmp_path, truth, station))
