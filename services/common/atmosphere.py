"""Column-integrated temperatures of the atmosphere for muon temperature corrections (DOMAIN.md §6).

Shared by the reanalysis service (ERA5 profiles at a station), the unify service and the simulator
(which uses the very same functions to write its truth), so that "T_eff" means one thing.

Conventions
-----------
- Pressure in hPa, temperature in K, atmospheric depth X in g cm⁻².
- Depth of a pressure level: ``X = p / g`` with ``g = 9.80665 m s⁻²``; 1 hPa = 100 Pa
  = 100 kg m⁻¹ s⁻², so ``X [g cm⁻²] = p [hPa] * 100 / g / 10 ≈ 1.0197 * p [hPa]``
  (1 kg m⁻² = 0.1 g cm⁻²).
- Layers: each pressure level ``i`` (sorted from the top) represents the layer between the
  midpoints to its neighbours; the top layer starts at p = 0 and the lowest level *above ground*
  extends down to the surface pressure. Levels below ground (``p_i > p_surface``) get no weight at
  all, so their (extrapolated) values never matter. Hence ``Σ ΔX_i = X_0 = p_surface / g`` exactly.
- Arrays are vectorised over time: ``temperature_k`` has shape ``[time, level]`` (or ``[level]``),
  ``surface_pressure_hpa`` shape ``[time]`` (or scalar), ``pressure_levels_hpa`` shape ``[level]``
  (shared) or ``[time, level]``. The order of the levels does not matter. NaN temperatures at a
  level that carries weight propagate to the result.

The weight function W(X) of the effective temperature
-----------------------------------------------------
``kind="production"`` (the default) is the depth profile of pion production in the hadronic cascade,

    W(X) = (exp(-X/Λ_π) - exp(-X/Λ_N)) / (1/Λ_N - 1/Λ_π),

with the nucleon attenuation length Λ_N ≈ 120 g cm⁻² and the pion attenuation length
Λ_π ≈ 160 g cm⁻². It is the solution of the cascade equations in the approximation of
energy-independent attenuation lengths: nucleons attenuate as exp(-X/Λ_N), pions are produced by
them and attenuated with Λ_π, so the pion flux at depth X is ∝ Λ_π/(Λ_π - Λ_N)·(exp(-X/Λ_π) -
exp(-X/Λ_N)) (T. K. Gaisser, R. Engel, E. Resconi, *Cosmic Rays and Particle Physics*, 2nd ed.,
Cambridge University Press 2016, ch. 5, the approximate solution for the pion flux in the
atmosphere).
Muons from decays of these pions carry the temperature dependence, so the temperature of the layers
where pions are most abundant is weighted most. The normalisation is irrelevant (it cancels in the
ratio); the divisor makes W positive for any Λ_π ≠ Λ_N (with the limit ``X exp(-X/Λ)`` when equal).
The profile peaks at X* = ln(Λ_π/Λ_N)·Λ_NΛ_π/(Λ_π - Λ_N) ≈ 138 g cm⁻² (about 135 hPa).

``kind="production_over_depth"`` divides the same profile by X: the decay probability of a pion of
energy E at depth X is ∝ ε_π/(E·X·cosθ) in an isothermal atmosphere, which gives the weight used by
MINOS/IceCube-style analyses in their high-threshold limit. Writing Λ' = Λ_NΛ_π/(Λ_π - Λ_N), the
pion term of E. W. Grashorn et al., Astropart. Phys. 33 (2010) 140 (also P. Adamson et al., MINOS,
Phys. Rev. D 81 (2010) 012001), W_π ∝ (1 - X/Λ')² exp(-X/Λ_π) / (γ + (γ+1)·B·K(X)·(E_th cosθ/ε_π)²)
with K(X) = (1 - X/Λ')² / ((1 - exp(-X/Λ'))·Λ'/X), reduces for E_th cosθ ≫ ε_π to
exp(-X/Λ_π)(1 - exp(-X/Λ'))·Λ'/X = Λ'·(exp(-X/Λ_π) - exp(-X/Λ_N))/X. It is offered for comparison;
a surface telescope (E_th ~ 1 GeV) is closer to the production profile.

Both weights are evaluated at the depth of the level, ``W(X_i)``, and multiplied by the layer
thickness ΔX_i (a midpoint quadrature of ∫ W(X) T(X) dX).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

#: Standard gravity. [m s⁻²]
G0_M_S2 = 9.80665
#: Nucleon attenuation length in air. [g cm⁻²]
LAMBDA_N_G_CM2 = 120.0
#: Pion attenuation length in air. [g cm⁻²]
LAMBDA_PI_G_CM2 = 160.0
#: The 37 ERA5 pressure levels, from the ground up. [hPa]
ERA5_PRESSURE_LEVELS_HPA: npt.NDArray[np.float64] = np.array(
    [1000, 975, 950, 925, 900, 875, 850, 825, 800, 775, 750, 700, 650, 600, 550, 500, 450, 400,
     350, 300, 250, 225, 200, 175, 150, 125, 100, 70, 50, 30, 20, 10, 7, 5, 3, 2, 1],
    dtype=np.float64,
)  # fmt: skip

WeightKind = Literal["production", "production_over_depth"]

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike


def pressure_to_depth_g_cm2(pressure_hpa: ArrayLike) -> FloatArray:
    """Atmospheric depth of a pressure, ``X = p / g``.

    Parameters
    ----------
    pressure_hpa : array_like
        Pressure. [hPa]

    Returns
    -------
    numpy.ndarray
        Depth. [g cm⁻²]
    """
    return np.asarray(pressure_hpa, dtype=np.float64) * (100.0 / G0_M_S2 / 10.0)


def _prepare(
    pressure_levels_hpa: ArrayLike, temperature_k: ArrayLike, surface_pressure_hpa: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray, bool]:
    """Broadcast to [time, level], sort levels from the top; tell whether the input had no time."""
    temp = np.asarray(temperature_k, dtype=np.float64)
    levels = np.asarray(pressure_levels_hpa, dtype=np.float64)
    surface = np.asarray(surface_pressure_hpa, dtype=np.float64)
    scalar = temp.ndim == 1 and levels.ndim == 1 and surface.ndim == 0
    if temp.ndim not in (1, 2) or levels.ndim not in (1, 2) or surface.ndim > 1:
        raise ValueError(
            "expected temperature [time, level] or [level], levels [level] or [time, level], "
            f"surface pressure [time] or scalar; got shapes {temp.shape}, {levels.shape}, "
            f"{surface.shape}"
        )
    temp2 = np.atleast_2d(temp)
    levels2 = np.atleast_2d(levels)
    n_time = max(temp2.shape[0], levels2.shape[0], surface.size if surface.ndim == 1 else 1)
    n_level = temp2.shape[1]
    if levels2.shape[1] != n_level:
        raise ValueError(
            f"{levels2.shape[1]} pressure levels but temperatures for {n_level} levels"
        )
    temp2 = np.broadcast_to(temp2, (n_time, n_level))
    levels2 = np.broadcast_to(levels2, (n_time, n_level))
    surface1 = np.broadcast_to(np.atleast_1d(surface), (n_time,))
    if np.any(levels2 <= 0) or not np.all(np.isfinite(levels2)):
        raise ValueError("pressure levels must be finite and positive [hPa]")
    if np.any(~(surface1 > 0)):
        raise ValueError("surface pressure must be positive [hPa]")
    order = np.argsort(levels2, axis=1, kind="stable")
    levels_sorted = np.take_along_axis(levels2, order, axis=1)
    temp_sorted = np.take_along_axis(temp2, order, axis=1)
    return levels_sorted, temp_sorted, surface1.astype(np.float64), scalar


def layer_depths_g_cm2(
    pressure_levels_hpa: ArrayLike, surface_pressure_hpa: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Depth of each level and the thickness of the layer it represents, bounded by the surface.

    Parameters
    ----------
    pressure_levels_hpa : array_like, shape [level] or [time, level]
        Pressure levels, in any order. [hPa]
    surface_pressure_hpa : array_like, shape [time] or scalar
        Surface pressure. [hPa]

    Returns
    -------
    depth : numpy.ndarray, shape [time, level]
        ``X_i = p_i / g`` of the levels sorted from the top (lowest pressure first). [g cm⁻²]
    thickness : numpy.ndarray, shape [time, level]
        ``ΔX_i``: the layer from the midpoint to the level above (or p = 0) down to the midpoint
        to the level below, or to the surface for the lowest level above ground; 0 for levels
        below ground. Sums to ``p_surface / g`` per time. [g cm⁻²]
    """
    levels_arr = np.asarray(pressure_levels_hpa, dtype=np.float64)
    levels, _, surface, _ = _prepare(
        levels_arr, np.zeros(levels_arr.shape[-1]), surface_pressure_hpa
    )
    return _depths_sorted(levels, surface)


def _depths_sorted(levels: FloatArray, surface: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``layer_depths_g_cm2`` for levels already sorted from the top, shape [time, level]."""
    ps = surface[:, None]
    above = levels <= ps
    mid = 0.5 * (levels[:, :-1] + levels[:, 1:])
    top = np.concatenate([np.zeros((levels.shape[0], 1)), mid], axis=1)
    below_next_above = np.concatenate([above[:, 1:], np.zeros((levels.shape[0], 1), bool)], axis=1)
    bottom = np.where(
        below_next_above, np.concatenate([mid, np.zeros((levels.shape[0], 1))], axis=1), ps
    )
    dp = np.where(above, bottom - np.minimum(top, ps), 0.0)
    return pressure_to_depth_g_cm2(levels), pressure_to_depth_g_cm2(dp)


def weight_function(
    depth_g_cm2: ArrayLike,
    kind: WeightKind = "production",
    lambda_n_g_cm2: float = LAMBDA_N_G_CM2,
    lambda_pi_g_cm2: float = LAMBDA_PI_G_CM2,
) -> FloatArray:
    """The weight W(X) of the effective temperature (see the module docstring for forms, sources).

    Parameters
    ----------
    depth_g_cm2 : array_like
        Atmospheric depth X, ≥ 0. [g cm⁻²]
    kind : {"production", "production_over_depth"}
        ``production``: W = (e^{-X/Λ_π} - e^{-X/Λ_N}) / (1/Λ_N - 1/Λ_π);
        ``production_over_depth``: the same divided by X.
    lambda_n_g_cm2, lambda_pi_g_cm2 : float
        Nucleon and pion attenuation lengths. [g cm⁻²]

    Returns
    -------
    numpy.ndarray
        W(X), ≥ 0, zero at X = 0 for ``production``. [dimensionless; arbitrary normalisation]
    """
    x = np.asarray(depth_g_cm2, dtype=np.float64)
    if lambda_n_g_cm2 <= 0 or lambda_pi_g_cm2 <= 0:
        raise ValueError("attenuation lengths must be positive [g cm-2]")
    inv = 1.0 / lambda_n_g_cm2 - 1.0 / lambda_pi_g_cm2
    if abs(inv) * max(lambda_n_g_cm2, lambda_pi_g_cm2) < 1e-12:
        w = x * np.exp(-x / lambda_n_g_cm2)
    else:
        w = (np.exp(-x / lambda_pi_g_cm2) - np.exp(-x / lambda_n_g_cm2)) / inv
    if kind == "production":
        return w
    if kind == "production_over_depth":
        with np.errstate(divide="ignore", invalid="ignore"):
            # limit X -> 0 of W/X is 1 (W ≈ X near the top)
            return np.where(x > 0, w / np.where(x > 0, x, 1.0), 1.0)
    raise ValueError(f"unknown weight kind {kind!r}")


def _finish(values: FloatArray, scalar: bool) -> FloatArray:
    return values[0] if scalar else values


def mass_weighted_temperature(
    pressure_levels_hpa: ArrayLike, temperature_k: ArrayLike, surface_pressure_hpa: ArrayLike
) -> FloatArray:
    """Mass-weighted temperature of the column, ``T_MW = Σ T_i ΔX_i / Σ ΔX_i``.

    Parameters
    ----------
    pressure_levels_hpa : array_like, shape [level] or [time, level]
        Pressure levels, any order. [hPa]
    temperature_k : array_like, shape [time, level] or [level]
        Temperature at the levels. [K]
    surface_pressure_hpa : array_like, shape [time] or scalar
        Surface pressure bounding the column. [hPa]

    Returns
    -------
    numpy.ndarray, shape [time] (0-d for 1-D input)
        T_MW. [K]
    """
    levels, temp, surface, scalar = _prepare(
        pressure_levels_hpa, temperature_k, surface_pressure_hpa
    )
    _, dx = _depths_sorted(levels, surface)
    temp_used = np.where(dx > 0, temp, 0.0)
    return _finish(np.sum(temp_used * dx, axis=1) / np.sum(dx, axis=1), scalar)


def effective_temperature(
    pressure_levels_hpa: ArrayLike,
    temperature_k: ArrayLike,
    surface_pressure_hpa: ArrayLike,
    *,
    weight: WeightKind = "production",
    lambda_n_g_cm2: float = LAMBDA_N_G_CM2,
    lambda_pi_g_cm2: float = LAMBDA_PI_G_CM2,
) -> FloatArray:
    """Effective temperature, ``T_eff = Σ W(X_i) T_i ΔX_i / Σ W(X_i) ΔX_i``.

    Parameters
    ----------
    pressure_levels_hpa : array_like, shape [level] or [time, level]
        Pressure levels, any order. [hPa]
    temperature_k : array_like, shape [time, level] or [level]
        Temperature at the levels. [K]
    surface_pressure_hpa : array_like, shape [time] or scalar
        Surface pressure bounding the column. [hPa]
    weight : {"production", "production_over_depth"}
        Form of W(X) (module docstring).
    lambda_n_g_cm2, lambda_pi_g_cm2 : float
        Nucleon and pion attenuation lengths. [g cm⁻²]

    Returns
    -------
    numpy.ndarray, shape [time] (0-d for 1-D input)
        T_eff. [K]
    """
    levels, temp, surface, scalar = _prepare(
        pressure_levels_hpa, temperature_k, surface_pressure_hpa
    )
    x, dx = _depths_sorted(levels, surface)
    w = weight_function(x, weight, lambda_n_g_cm2, lambda_pi_g_cm2) * dx
    temp_used = np.where(dx > 0, temp, 0.0)
    return _finish(np.sum(w * temp_used, axis=1) / np.sum(w, axis=1), scalar)
