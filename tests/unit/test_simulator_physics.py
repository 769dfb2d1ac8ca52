"""Statistics of simulated events against the simulator's own parameters.

Tolerances come from the statistics of each quantity (derivations next to each test), at about 4σ
(two-sided p ≈ 6e-5 per check), so the suite is stable for any seed while a real bias of a few σ
still fails.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from schemas.dat_format import TRIGGER_COINCIDENCE, TRIGGER_SELF
from services.common.stations import load_network
from simulator.detector import (
    detector_response,
    detector_response_reference,
    electronics,
    electronics_reference,
    fired_pairs,
    timed_strips,
)
from simulator.events import file_window, simulate_hour
from simulator.model import draw_detector_model
from simulator.muons import (
    candidate_fraction,
    generation_half_width_mm,
    in_candidate_region,
    sample_candidates,
    sample_muons_on_plane,
)
from simulator.station import StationSim, build_station_sim
from simulator.weather import AtmosphereCoefficients

pytestmark = pytest.mark.unit

SEED = 11
HOUR0 = 1709251200 + 9 * 3600  # 2024-03-01 09:00 UTC
#: Kolmogorov-Smirnov critical value of sqrt(n) D at p = 0.001.
KS_001 = 1.95


def _ks_one(sample: np.ndarray, cdf) -> float:
    x = np.sort(sample)
    n = x.size
    f = cdf(x)
    return float(max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n)))


def _ks_two(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / a.size
    fb = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


@pytest.fixture(scope="module")
def sim() -> StationSim:
    return build_station_sim(
        load_network().station(1), SEED, rate_hz=8.0, acceptance_samples=400_000
    )


@pytest.fixture(scope="module")
def hours(sim: StationSim):
    weather = sim.weather.hourly(np.arange(HOUR0 - 3600, HOUR0 + 4 * 3600, 3600), sim.coefficients)
    return [simulate_hour(sim, file_window(SEED, 1, HOUR0 + h * 3600), weather) for h in range(2)]


def test_generated_directions_are_cos2_and_uniform_in_phi() -> None:
    # cos θ = U^(1/3): P(cos θ ≤ c) = c³; KS at p = 0.001: sqrt(n) D < 1.95
    n = 200_000
    tracks = sample_muons_on_plane(np.random.default_rng(1), n, 1400.0)
    assert np.sqrt(n) * _ks_one(tracks.cos_theta, lambda c: c**3) < KS_001
    assert np.sqrt(n) * _ks_one(tracks.phi, lambda p: (p + np.pi) / (2 * np.pi)) < KS_001


def test_candidates_are_an_exact_thinning_of_the_generation_plane() -> None:
    """The fast candidate sampler against brute force: generate on the whole square, keep the
    tracks inside their candidate region. Same fraction (binomial, 4σ) and same distributions
    (two-sample KS at p = 0.001: sqrt(nm/(n+m)) D < 1.95)."""
    model = draw_detector_model(SEED, 1)
    half = generation_half_width_mm(model)
    p_bar = candidate_fraction(model, half)
    n = 2_000_000
    full = sample_muons_on_plane(np.random.default_rng(2), n, half)
    inside = in_candidate_region(full, model)
    k = int(inside.sum())
    assert abs(k - n * p_bar) < 4 * np.sqrt(n * p_bar * (1 - p_bar))
    brute = full.take(np.flatnonzero(inside))
    fast = sample_candidates(np.random.default_rng(3), k, model)
    scale = np.sqrt(k * k / (2 * k))
    for name in ("cos_theta", "phi", "x0", "y0", "tx", "ty"):
        d = _ks_two(getattr(brute, name), getattr(fast, name))
        assert scale * d < KS_001, name
    # every candidate lies in its region; a track outside cannot reach any plane
    assert in_candidate_region(fast, model).all()


def test_accepted_rate(sim: StationSim, hours) -> None:
    """Triggered coincidences of two hours against Σ_s rate_hz · f(s).

    The triggered events are a thinned Poisson process, so N ~ Poisson(E) with E the expectation
    computed with the true acceptance; the simulator knows the acceptance only to σ_a (MC
    pre-pass), which shifts E by a relative σ_a/a. Total σ² = E + (E σ_a/a)²; tolerance 4σ.
    """
    observed = sum(h.triggered for h in hours)
    expected = sum(h.expected_triggered for h in hours)
    rel = sim.acceptance.sigma / sim.acceptance.value
    sigma = np.sqrt(expected + (expected * rel) ** 2)
    assert abs(observed - expected) < 4 * sigma, (observed, expected, sigma)
    # and the mean rate is the requested one up to the weather: E / live time / <f> = rate_hz
    assert 6.5 < observed / sum(h.window.live_s for h in hours) < 9.5


def test_trigger_and_generated_counts(sim: StationSim, hours) -> None:
    """Candidates ~ Poisson(R_cand Σf), generated ⊇ candidates; every event fired a pair."""
    for h in hours:
        t = h.truth
        coinc = t["trigger_type"] == TRIGGER_COINCIDENCE
        assert np.all(t["pairs_fired"][coinc] > 0)
        assert h.generated_muons > h.candidates > h.triggered
        # generated / candidates ≈ 1 / p̄: binomial thinning, 4σ
        p = sim.candidate_fraction
        assert abs(h.candidates - h.generated_muons * p) < 4 * np.sqrt(
            h.generated_muons * p * (1 - p)
        )


def _plane_hits_from_text(h) -> np.ndarray:
    """Planes with charge written, recovered from the formatted lines (not from the truth)."""
    from simulator.formatting import format_event_lines

    buf, _ = format_event_lines(h.epoch_s, h.trigger, h.ticks)
    values = (
        np.array(bytes(buf).decode().split(), dtype=object).reshape(len(h), 71)[:, 7:].astype(float)
    )
    mask = np.zeros(len(h), np.uint8)
    for plane in range(1, 5):
        block = (4 - plane) * 16  # plane 4 first: T_F, T_B, Q_F, Q_B x 4 strips
        charged = (values[:, block + 8 : block + 16] != 0).any(axis=1)
        mask |= (charged * (1 << (plane - 1))).astype(np.uint8)
    return mask


def test_plane_efficiencies_three_of_four(sim: StationSim, hours) -> None:
    """3-of-4 efficiencies on a well-defined subset.

    ε_k = N_1234 / (N_1234 + N_(others)) counts events where the three other planes are hit. With
    the default pairs (12, 23, 34, 13) any three planes already fire a pair, so the trigger does
    not depend on plane k in that subset: no trigger bias. Tracks that miss plane k geometrically
    would count as failures, so the subset also requires the true track to cross the fiducial
    area (|x| < 140, |y| < 133 mm) of all four planes. Plane k then fires with probability
    1 - (1 - ε_k)^(1/cos θ) per track (charge-threshold losses are ~1e-4), so the expectation is the
    mean of that over the subset's θ; binomial σ = sqrt(p(1-p)/N), tolerance 4σ. The naive
    estimate over all events is biased upwards (inclined tracks are more efficient), which the
    last assertion shows.
    """
    hit = np.concatenate([_plane_hits_from_text(h) for h in hours])
    truth = {k: np.concatenate([h.truth[k] for h in hours]) for k in hours[0].truth}
    coinc = truth["trigger_type"] == TRIGGER_COINCIDENCE
    fiducial = coinc.copy()
    for k in range(1, 5):
        fiducial &= (np.abs(truth[f"x_p{k}"]) < 140) & (np.abs(truth[f"y_p{k}"]) < 133)
    cos_theta = np.cos(np.radians(truth["theta_deg"]))
    for k in range(4):
        others = 0b1111 & ~(1 << k)
        subset = fiducial & ((hit & others) == others)
        n = int(subset.sum())
        measured = np.count_nonzero(hit[subset] & (1 << k)) / n
        eps = sim.detector.efficiency[k]
        expected = float(np.mean(1 - (1 - eps) ** (1 / cos_theta[subset])))
        sigma = np.sqrt(expected * (1 - expected) / n)
        assert n > 3000
        assert abs(measured - expected) < 4 * sigma, (k + 1, measured, expected, sigma)
        assert expected > eps  # inclined tracks are more efficient than ε (defined for vertical)


def test_positions_and_times_are_encoded(sim: StationSim, hours) -> None:
    """x = (T_dif - offset) · v at every hit strip; T_sum inside the station's window.

    The residual of x comes from the time jitter: σ_x = v σ_t / √2 (T_dif averages two channels)
    = 199.86 · 0.034 / √2 ≈ 4.8 mm; allow ±20 % on the width (N is large) and 1 mm on the mean.
    """
    model = sim.detector
    h = hours[0]
    coinc = h.truth["trigger_type"] == TRIGGER_COINCIDENCE
    ticks = h.ticks[coinc] / 1e4
    cols = model.columns
    residuals, tsum = [], []
    for k in range(4):
        for s in range(4):
            tf, tb = ticks[:, cols[k, 0, s]], ticks[:, cols[k, 1, s]]
            ok = (tf != 0) & (tb != 0)
            offset = (model.t_offset_ns[k, 1, s] - model.t_offset_ns[k, 0, s]) / 2
            x_rec = ((tb[ok] - tf[ok]) / 2 - offset) * model.signal_speed_mm_ns
            residuals.append(x_rec - h.truth[f"x_p{k + 1}"][coinc][ok])
            tsum.append((tf[ok] + tb[ok]) / 2)
    r = np.concatenate(residuals)
    expected_sigma = model.signal_speed_mm_ns * model.time_jitter_ns / np.sqrt(2)
    assert abs(r.mean()) < 1.0
    assert 0.8 * expected_sigma < r.std() < 1.2 * expected_sigma
    t = np.concatenate(tsum)
    low, high = sim.station.tsum_window_ns
    assert np.mean((t >= low) & (t <= high)) > 0.9
    assert t.min() > -200 and t.max() < -100


def test_charges_are_time_over_threshold_widths(hours) -> None:
    q = (
        hours[0].ticks.reshape(len(hours[0]), 4, 4, 4)[:, :, 2:, :] / 1e4
    )  # [event, plane, Q_F/Q_B, strip]
    written = q[q != 0]
    assert written.min() > 80 and np.percentile(written, 99.9) < 320
    assert 100 < np.median(written) < 250


def test_self_trigger_run(sim: StationSim) -> None:
    """The 04:00 file holds the noise run: ~rate x 300 s type-2 events inside 04:00:30-04:05:30."""
    hour = 1709251200 + 4 * 3600
    weather = sim.weather.hourly(np.arange(hour - 3600, hour + 3 * 3600, 3600), sim.coefficients)
    h = simulate_hour(sim, file_window(SEED, 1, hour), weather)
    st = h.truth["trigger_type"] == TRIGGER_SELF
    n = int(st.sum())
    expected = sim.self_trigger.rate_hz * sim.self_trigger.duration_s
    assert abs(n - expected) < 4 * np.sqrt(expected)
    times = h.epoch_s[st]
    assert times.min() >= hour + 30 and times.max() < hour + 30 + 300
    assert np.all(np.diff(h.epoch_s) >= 0)


def test_rate_factor_formula(sim: StationSim) -> None:
    weather = sim.weather.hourly(np.arange(HOUR0, HOUR0 + 48 * 3600, 3600), sim.coefficients)
    c = sim.coefficients
    f = np.exp(c.beta_pct_per_hpa / 100 * (weather.surface_pressure_hpa - c.p0_hpa)) * (
        1 + c.alpha_t_pct_per_k / 100 * (weather.t_eff_k - c.teff_ref_k)
    )
    assert np.allclose(weather.rate_factor, f, rtol=1e-14)
    # the synoptic variation spans several hPa, the factor a few %
    assert np.ptp(weather.surface_pressure_hpa) > 3
    assert 0.9 < f.min() < f.max() < 1.1


def test_coefficient_overrides() -> None:
    station = load_network().station(2)
    sim = build_station_sim(
        station, SEED, beta_pct_per_hpa=-0.2, alpha_t_pct_per_k=-0.1, acceptance_samples=1000
    )
    assert sim.coefficients == AtmosphereCoefficients(
        -0.2, station.atmosphere.p0_hpa, -0.1, station.atmosphere.teff_ref_k
    )
    assert sim.to_dict()["beta_pct_per_hpa"] == -0.2


def test_kernels_equal_their_references(sim: StationSim) -> None:
    model = sim.detector
    rng = np.random.default_rng(4)
    tracks = sample_candidates(rng, 20_000, model)
    fast = detector_response(tracks, model, np.random.default_rng(5))
    ref = detector_response_reference(tracks, model, np.random.default_rng(5))
    assert np.array_equal(fast.avalanche, ref.avalanche)
    assert np.array_equal(fast.hit_mask, ref.hit_mask)
    assert np.allclose(fast.q_strip, ref.q_strip, rtol=1e-12, atol=1e-9)
    chosen = np.flatnonzero(fired_pairs(fast.hit_mask, model))
    resp = fast.take(chosen)
    t_event = rng.random(chosen.size) * 10
    noise = rng.standard_normal(4 * timed_strips(resp, model))
    a = electronics(resp, tracks.cos_theta[chosen], t_event, noise, model)
    b = electronics_reference(resp, tracks.cos_theta[chosen], t_event, noise, model)
    assert np.abs(a - b).max() <= 1  # ticks; a last-bit difference may round differently
    assert np.mean(a == b) > 0.9999


def test_hours_do_not_depend_on_the_span(sim: StationSim) -> None:
    """Per-hour random streams: an hour is the same bytes whatever else is simulated."""
    hour = HOUR0 + 3600
    w1 = sim.weather.hourly(np.arange(hour - 3600, hour + 3 * 3600, 3600), sim.coefficients)
    w2 = sim.weather.hourly(np.arange(hour - 50 * 3600, hour + 9 * 3600, 3600), sim.coefficients)
    a = simulate_hour(sim, file_window(SEED, 1, hour), w1)
    b = simulate_hour(sim, file_window(SEED, 1, hour), w2)
    assert np.array_equal(a.ticks, b.ticks) and np.array_equal(a.epoch_s, b.epoch_s)
    assert date(2024, 3, 1)  # the span of the fixture


def test_acceptance_prepass_is_reproducible(sim: StationSim) -> None:
    again = build_station_sim(sim.station, SEED, rate_hz=8.0, acceptance_samples=400_000)
    assert again.acceptance == sim.acceptance
    assert again.param_hash() == sim.param_hash()
    assert 0.1 < sim.acceptance.value < 0.6
