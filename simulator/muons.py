"""Muon tracks: cosⁿθ directions on a wide generation plane, and the exact thinning to candidates.

The generation plane lies at the top plane's z and is a square of half-width ``W`` (mm), wide enough
that every track able to fire a trigger pair starts on it (:func:`generation_half_width_mm`). Muons
arrive on it uniformly in position, with ``cos θ = U^(1/(n+1))`` (n = 2: a cos²θ density of cos θ,
the convention of the network's digital twin) and φ uniform in [-π, π).

Simulating every muon of that square would waste time on tracks that miss the stack, so only the
*candidates* are simulated: muons with θ ≤ θ_max (no steeper track can fire a pair) whose position
at the top plane lies in the box from which the track can reach at least one plane's active area.
For a direction with slopes (t_x, t_y) = tanθ (cos φ, sin φ) that box is
``[-X - max(0, t_x D), X - min(0, t_x D)] × [-Y - max(0, t_y D), Y - min(0, t_y D)]`` (X, Y the
active half-sizes, D the stack depth) of area ``(2X + |t_x| D)(2Y + |t_y| D)``. Candidates are a
thinning of the muons on the square, hence a Poisson process of rate ``R_gen · p̄`` with
``p̄ = P(θ ≤ θ_max) · E[box area | θ ≤ θ_max] / (2W)²`` (closed form in :func:`candidate_fraction`);
their directions have density ∝ cosⁿ-density × box area (sampled by rejection) and, given the
direction, a uniform position in the box. Muons that are not candidates are only counted.

Slopes: ``tx = dx/dz = tanθ cos φ``, ``ty = dy/dz = tanθ sin φ`` with z pointing down, so a track
is ``x(z) = x0 + tx (z - z_top)`` and a reconstruction's ``φ = atan2(y', x')`` is this φ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator import _kernels
from simulator.model import DetectorModel


@dataclass(frozen=True)
class Tracks:
    """Straight tracks: position at the top plane [mm], slopes, cos θ, φ [rad]."""

    x0: np.ndarray
    y0: np.ndarray
    tx: np.ndarray
    ty: np.ndarray
    cos_theta: np.ndarray
    phi: np.ndarray

    def __len__(self) -> int:
        return int(self.x0.size)

    def take(self, index: np.ndarray) -> Tracks:
        """A subset of the tracks."""
        return Tracks(
            *(a[index] for a in (self.x0, self.y0, self.tx, self.ty, self.cos_theta, self.phi))
        )


def sample_cos_theta(
    rng: np.random.Generator, n: int, cos_power: float = 2.0, cos_min: float = 0.0
) -> np.ndarray:
    """cos θ with density ∝ cosⁿθ on [cos_min, 1].

    ``c = (c_min^(n+1) + U (1 - c_min^(n+1)))^(1/(n+1))``.
    """
    k = cos_power + 1.0
    low = cos_min**k
    return (low + rng.random(n) * (1.0 - low)) ** (1.0 / k)


def sample_muons_on_plane(
    rng: np.random.Generator, n: int, half_width_mm: float, cos_power: float = 2.0
) -> Tracks:
    """``n`` muons of the full generation square, no thinning (reference of
    :func:`sample_candidates`)."""
    c = sample_cos_theta(rng, n, cos_power)
    phi = rng.random(n) * 2 * np.pi - np.pi
    tan = np.sqrt(1.0 - c * c) / c
    x0 = (rng.random(n) * 2 - 1) * half_width_mm
    y0 = (rng.random(n) * 2 - 1) * half_width_mm
    return Tracks(x0, y0, tan * np.cos(phi), tan * np.sin(phi), c, phi)


def box_bounds(
    tx: np.ndarray, ty: np.ndarray, x_half: float, y_half: float, depth: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Box at the top plane from which a track of these slopes can reach an active area. [mm]"""
    x_lo = -x_half - np.maximum(0.0, tx * depth)
    x_hi = x_half - np.minimum(0.0, tx * depth)
    y_lo = -y_half - np.maximum(0.0, ty * depth)
    y_hi = y_half - np.minimum(0.0, ty * depth)
    return x_lo, x_hi, y_lo, y_hi


def generation_half_width_mm(model: DetectorModel) -> float:
    """Half-width of the generation square: the largest box of any triggerable direction, rounded
    up to 100 mm. [mm]"""
    g = model.geometry
    reach = np.tan(model.theta_max_trigger_rad()) * g.depth_mm
    return float(np.ceil((max(g.x_half_mm, g.y_half_mm) + reach) / 100.0) * 100.0)


def candidate_fraction(model: DetectorModel, half_width_mm: float) -> float:
    """``p̄``: the fraction of the square's muons that are candidates (closed form for n = 2).

    With c_min = cos θ_max and c ~ 3c² on [0, 1]: P(c ≥ c_min) = 1 - c_min³,
    ∫ 3c² tanθ dc = (1 - c_min²)^(3/2), ∫ 3c² tan²θ dc = 3(1 - c_min) - (1 - c_min³), and over φ
    E|cos φ| = E|sin φ| = 2/π, E|sin φ cos φ| = 1/π.
    """
    if model.cos_power != 2.0:
        raise NotImplementedError("the closed form of the candidate fraction assumes n = 2")
    g = model.geometry
    x, y, d = g.x_half_mm, g.y_half_mm, g.depth_mm
    if half_width_mm < max(x, y) + np.tan(model.theta_max_trigger_rad()) * d - 1e-9:
        raise ValueError("the generation square must contain every candidate box")
    return float(candidate_term_weights(model)[-1] / (2 * half_width_mm) ** 2)


def candidate_term_weights(model: DetectorModel) -> np.ndarray:
    """Integrals of the four terms of the candidate density (cumulated), see
    ``_kernels.candidate_tracks_kernel``; their sum over (2W)² is :func:`candidate_fraction`."""
    g = model.geometry
    x, y, d = g.x_half_mm, g.y_half_mm, g.depth_mm
    c_min = float(np.cos(model.theta_max_trigger_rad()))
    i0 = 1.0 - c_min**3
    i1 = (1.0 - c_min**2) ** 1.5
    i2 = 3.0 * (1.0 - c_min) - (1.0 - c_min**3)
    terms = np.array(
        [
            4 * x * y * i0,
            (2 / np.pi) * 2 * x * d * i1,
            (2 / np.pi) * 2 * y * d * i1,
            d * d * i2 / np.pi,
        ]
    )
    return np.cumsum(terms)


def sample_candidates(rng: np.random.Generator, n: int, model: DetectorModel) -> Tracks:
    """``n`` candidate tracks (see the module docstring), sampled exactly as a mixture (numba)."""
    if model.cos_power != 2.0:
        raise NotImplementedError("candidate sampling is written for n = 2")
    g = model.geometry
    u = rng.random((n, 6))
    c = np.empty(n)
    phi = np.empty(n)
    x0 = np.empty(n)
    y0 = np.empty(n)
    _kernels.candidate_tracks_kernel(
        u,
        float(np.cos(model.theta_max_trigger_rad())),
        candidate_term_weights(model),
        float(g.x_half_mm),
        float(g.y_half_mm),
        float(g.depth_mm),
        c,
        phi,
        x0,
        y0,
    )
    tan = np.sqrt(1.0 - c * c) / c
    return Tracks(x0, y0, tan * np.cos(phi), tan * np.sin(phi), c, phi)


def in_candidate_region(tracks: Tracks, model: DetectorModel) -> np.ndarray:
    """Whether tracks of the full square are candidates (θ ≤ θ_max and inside their box)."""
    g = model.geometry
    x_lo, x_hi, y_lo, y_hi = box_bounds(tracks.tx, tracks.ty, g.x_half_mm, g.y_half_mm, g.depth_mm)
    ok_theta = tracks.cos_theta >= np.cos(model.theta_max_trigger_rad())
    return (
        ok_theta
        & (tracks.x0 >= x_lo)
        & (tracks.x0 <= x_hi)
        & (tracks.y0 >= y_lo)
        & (tracks.y0 <= y_hi)
    )
