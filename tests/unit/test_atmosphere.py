"""Column temperatures of services.common.atmosphere: T_MW, T_eff, layer depths, weights."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.atmosphere import (
    ERA5_PRESSURE_LEVELS_HPA,
    G0_M_S2,
    LAMBDA_N_G_CM2,
    LAMBDA_PI_G_CM2,
    WeightKind,
    effective_temperature,
    layer_depths_g_cm2,
    mass_weighted_temperature,
    pressure_to_depth_g_cm2,
    weight_function,
)

pytestmark = pytest.mark.unit

LEVELS = ERA5_PRESSURE_LEVELS_HPA
KINDS: tuple[WeightKind, ...] = ("production", "production_over_depth")


def _profile(surface_k: float = 288.0) -> np.ndarray:
    """A realistic profile: 6.5 K/km lapse rate to a 216 K tropopause, warming above 50 hPa."""
    t = surface_k * (LEVELS / 1000.0) ** 0.1903
    t = np.maximum(t, 216.0)
    return np.where(LEVELS < 50, 216.0 + 14.0 * np.log(50.0 / LEVELS), t)


def test_units_of_depth() -> None:
    # 1 hPa = 100 Pa = 100 kg m-1 s-2; X = p/g in kg m-2; 1 kg m-2 = 0.1 g cm-2
    assert pressure_to_depth_g_cm2(1013.25) == pytest.approx(1013.25 * 100 / G0_M_S2 / 10)
    assert pressure_to_depth_g_cm2(1013.25) == pytest.approx(1033.227, abs=1e-3)


@pytest.mark.parametrize("surface", [1013.25, 940.0, 785.0, 1040.0])
def test_layers_sum_to_the_column_above_the_surface(surface: float) -> None:
    depth, thickness = layer_depths_g_cm2(LEVELS, surface)
    assert thickness.sum() == pytest.approx(pressure_to_depth_g_cm2(surface), rel=1e-12)
    assert np.all(thickness >= 0)
    # levels below ground carry nothing
    below = np.sort(LEVELS) > surface
    assert np.all(thickness[0][below] == 0)
    assert np.all(np.diff(depth[0]) > 0)  # sorted from the top


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("surface", [1013.25, 940.0, 785.0])
def test_isothermal_column_gives_its_temperature(kind: WeightKind, surface: float) -> None:
    temp = np.full(LEVELS.size, 243.15)
    assert mass_weighted_temperature(LEVELS, temp, surface) == pytest.approx(243.15, rel=1e-12)
    assert effective_temperature(LEVELS, temp, surface, weight=kind) == pytest.approx(
        243.15, rel=1e-12
    )


@pytest.mark.parametrize("kind", KINDS)
def test_weights_are_positive(kind: WeightKind) -> None:
    x = np.linspace(0.01, 1100, 2000)
    assert np.all(weight_function(x, kind) > 0)
    # also with the lengths swapped: the divisor keeps the sign
    assert np.all(weight_function(x, kind, 160.0, 120.0) > 0)
    assert np.all(weight_function(x, kind, 140.0, 140.0) > 0)


def test_production_weight_shape() -> None:
    assert weight_function(0.0) == 0.0
    x = np.linspace(0, 1000, 100001)
    peak = x[np.argmax(weight_function(x))]
    lam = LAMBDA_N_G_CM2 * LAMBDA_PI_G_CM2 / (LAMBDA_PI_G_CM2 - LAMBDA_N_G_CM2)
    assert peak == pytest.approx(np.log(LAMBDA_PI_G_CM2 / LAMBDA_N_G_CM2) * lam, abs=0.02)


@pytest.mark.parametrize("kind", KINDS)
def test_order_of_levels_does_not_matter(kind: WeightKind) -> None:
    temp = _profile()
    rng = np.random.default_rng(3)
    perm = rng.permutation(LEVELS.size)
    for func in (mass_weighted_temperature, effective_temperature):
        kwargs = {"weight": kind} if func is effective_temperature else {}
        a = func(LEVELS, temp, 950.0, **kwargs)
        b = func(LEVELS[perm], temp[perm], 950.0, **kwargs)
        assert a == pytest.approx(b, rel=1e-14)


def test_levels_below_ground_are_ignored() -> None:
    temp = _profile()
    changed = np.where(LEVELS > 940.0, 400.0, temp)
    for func in (mass_weighted_temperature, effective_temperature):
        assert func(LEVELS, temp, 940.0) == func(LEVELS, changed, 940.0)


def test_hand_computed_three_levels() -> None:
    levels = np.array([100.0, 500.0, 900.0])
    temp = np.array([210.0, 250.0, 280.0])
    surface = 1000.0
    # layers: [0, 300], [300, 700], [700, 1000] hPa
    dp = np.array([300.0, 400.0, 300.0])
    expected_mw = np.sum(temp * dp) / dp.sum()
    assert mass_weighted_temperature(levels, temp, surface) == pytest.approx(expected_mw)
    x = levels * 100 / G0_M_S2 / 10
    w = np.exp(-x / LAMBDA_PI_G_CM2) - np.exp(-x / LAMBDA_N_G_CM2)
    expected_eff = np.sum(w * temp * dp) / np.sum(w * dp)
    assert effective_temperature(levels, temp, surface) == pytest.approx(expected_eff)
    # surface between levels: the 900 hPa level is below ground at 850 hPa
    dp2 = np.array([300.0, 550.0])
    expected2 = np.sum(temp[:2] * dp2) / dp2.sum()
    assert mass_weighted_temperature(levels, temp, 850.0) == pytest.approx(expected2)


def test_vectorised_over_time_equals_row_by_row() -> None:
    rng = np.random.default_rng(5)
    temps = np.stack([_profile(280 + 10 * rng.random()) + rng.normal(0, 1, LEVELS.size)
                      for _ in range(7)])  # fmt: skip
    surface = 930 + 20 * rng.random(7)
    teff = effective_temperature(LEVELS, temps, surface)
    tmw = mass_weighted_temperature(LEVELS, temps, surface)
    assert teff.shape == (7,) and tmw.shape == (7,)
    for i in range(7):
        assert teff[i] == pytest.approx(effective_temperature(LEVELS, temps[i], surface[i]))
        assert tmw[i] == pytest.approx(mass_weighted_temperature(LEVELS, temps[i], surface[i]))
    # a shared surface pressure broadcasts; per-time levels are accepted
    both = effective_temperature(np.broadcast_to(LEVELS, temps.shape), temps, 950.0)
    assert both.shape == (7,)


def test_realistic_values() -> None:
    temp = _profile()
    teff = float(effective_temperature(LEVELS, temp, 1013.25))
    tmw = float(mass_weighted_temperature(LEVELS, temp, 1013.25))
    # T_eff is dominated by the layers near 100-300 hPa; T_MW by the troposphere
    assert 214 < teff < 235
    assert 240 < tmw < 265
    assert teff < tmw


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError):
        effective_temperature(LEVELS, np.zeros(36), 1000.0)
    with pytest.raises(ValueError):
        effective_temperature(-LEVELS, np.zeros(37), 1000.0)
    with pytest.raises(ValueError):
        weight_function(1.0, "nope")  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(
    shift=st.floats(-50, 50),
    surface=st.floats(500, 1050),
)
def test_linear_in_temperature(shift: float, surface: float) -> None:
    temp = _profile()
    for func in (mass_weighted_temperature, effective_temperature):
        base = float(func(LEVELS, temp, surface))
        assert float(func(LEVELS, temp + shift, surface)) == pytest.approx(base + shift, abs=1e-9)
