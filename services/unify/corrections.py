"""Atmospheric and efficiency corrections of the total rate, with propagated uncertainties.

All functions take and return numpy arrays (NaN where an input is missing) and are vectorised.

- Pressure (DOMAIN.md §6): ``I_P = I exp(-β/100 (P - P0))``;
  ``σ_P² = (k σ_I)² + (I_P (P - P0)/100 σ_β)²`` with ``k = exp(-β/100 (P - P0))``.
- Temperature, T_eff method: ``I_PT = I_P / D`` with ``D = 1 + α_T/100 (T_eff - T_eff,ref)``
  (kelvin); ``σ_PT² = (σ_P / D)² + (I_PT (T_eff - T_eff,ref)/100 σ_α / D)²``.
- Efficiency: a track enters the total rate when at least 3 of the 4 planes see it, so
  ``E = Σ_i Π_{j≠i} ε_j - 3 Π_j ε_j`` and ``I_E = I / E``;
  ``σ_E² = Σ_k (∂E/∂ε_k σ_εk)²``, ``σ_IE² = (σ_I / E)² + (I σ_E / E²)²``.

The uncertainties of the barometer and of T_eff are not included (not known per reading); the
rate error and the plane-efficiency errors are treated as independent.
"""

from __future__ import annotations

import numpy as np


def pressure_correction(
    rate_hz: np.ndarray,
    rate_err_hz: np.ndarray,
    pressure_hpa: np.ndarray,
    beta_pct_per_hpa: float,
    beta_err_pct_per_hpa: float,
    p0_hpa: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Pressure-corrected rate and its uncertainty.

    Parameters
    ----------
    rate_hz, rate_err_hz : ndarray
        Rate and its error. [Hz]
    pressure_hpa : ndarray
        Pressure of each minute (NaN = missing). [hPa]
    beta_pct_per_hpa, beta_err_pct_per_hpa : float
        Barometric coefficient β and its uncertainty. [%/hPa]
    p0_hpa : float
        Reference pressure P0. [hPa]

    Returns
    -------
    rate, err : ndarray
        ``I exp(-β/100 (P - P0))`` and its uncertainty (NaN where P is). [Hz]
    """
    dp = np.asarray(pressure_hpa, dtype=np.float64) - p0_hpa
    factor = np.exp(-beta_pct_per_hpa / 100.0 * dp)
    corrected = rate_hz * factor
    err = np.hypot(rate_err_hz * factor, corrected * dp / 100.0 * beta_err_pct_per_hpa)
    return corrected, err


def temperature_correction(
    rate_hz: np.ndarray,
    rate_err_hz: np.ndarray,
    t_eff_k: np.ndarray,
    alpha_t_pct_per_k: float,
    alpha_t_err_pct_per_k: float,
    teff_ref_k: float,
) -> tuple[np.ndarray, np.ndarray]:
    """T_eff-corrected rate and its uncertainty.

    Parameters
    ----------
    rate_hz, rate_err_hz : ndarray
        Rate (normally pressure-corrected) and its error. [Hz]
    t_eff_k : ndarray
        Effective temperature (NaN = missing). [K]
    alpha_t_pct_per_k, alpha_t_err_pct_per_k : float
        Temperature coefficient α_T and its uncertainty. [%/K]
    teff_ref_k : float
        Reference effective temperature. [K]

    Returns
    -------
    rate, err : ndarray
        ``I / (1 + α_T/100 (T_eff - T_eff,ref))`` and its uncertainty. [Hz]
    """
    dt = np.asarray(t_eff_k, dtype=np.float64) - teff_ref_k
    denominator = 1.0 + alpha_t_pct_per_k / 100.0 * dt
    corrected = rate_hz / denominator
    err = np.hypot(
        rate_err_hz / denominator, corrected * dt / 100.0 * alpha_t_err_pct_per_k / denominator
    )
    return corrected, err


def three_of_four_efficiency(eff: np.ndarray, eff_err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probability that a track is seen by at least 3 of the 4 planes, and its uncertainty.

    Parameters
    ----------
    eff, eff_err : ndarray, shape (n, 4)
        Plane efficiencies and their errors (NaN = missing). [1]

    Returns
    -------
    e, err : ndarray, shape (n,)
        ``E = Σ_i Π_{j≠i} ε_j - 3 Π_j ε_j`` and its propagated error. [1]
    """
    eff = np.asarray(eff, dtype=np.float64)
    all_four = np.prod(eff, axis=1)
    # products of the other three planes, and of the other two for each pair (k, i)
    others = np.stack([np.prod(np.delete(eff, k, axis=1), axis=1) for k in range(4)], axis=1)
    e = others.sum(axis=1) - 3.0 * all_four
    grads = []
    for k in range(4):
        pairs = sum(np.prod(np.delete(eff, [i, k], axis=1), axis=1) for i in range(4) if i != k)
        grads.append(pairs - 3.0 * others[:, k])
    err = np.sqrt(np.sum((np.stack(grads, axis=1) * eff_err) ** 2, axis=1))
    return e, err


def efficiency_correction(
    rate_hz: np.ndarray, rate_err_hz: np.ndarray, e: np.ndarray, e_err: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rate divided by the 3-of-4 efficiency, and its uncertainty.

    Parameters
    ----------
    rate_hz, rate_err_hz : ndarray
        Rate and its error. [Hz]
    e, e_err : ndarray
        3-of-4 efficiency and its error (:func:`three_of_four_efficiency`). [1]

    Returns
    -------
    rate, err : ndarray
        ``I / E`` and ``sqrt((σ_I/E)² + (I σ_E/E²)²)``; NaN where ``E`` is missing or 0. [Hz]
    """
    e = np.where(e > 0, e, np.nan)
    corrected = rate_hz / e
    return corrected, np.hypot(rate_err_hz / e, rate_hz * e_err / e**2)
