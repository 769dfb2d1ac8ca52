"""Helpers of the reconstruct physics tests: simulate, reconstruct, compare with the truth."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from services.common.logbook import LogbookEntry, parse_logbook, z_positions_at
from services.common.stations import Station, load_network
from services.reconstruct.cli import load_dat
from services.reconstruct.pipeline import rates_rows, reconstruct_files
from services.reconstruct.stream import ChunkResult
from tests.simulated import simulate_day


@dataclass
class Reconstructed:
    """One simulated station: its truth, the reconstruction, the matched per-event truth."""

    station: Station
    params: dict
    results: list[ChunkResult]
    rows: list[dict]
    truth: pd.DataFrame  #: per-event truth of the coincidence events, in result order
    truth_live_s: float


def simulate(out: Path, stations: tuple[int, ...], rate_hz: float, seed: int = 11) -> dict:
    """Simulate one undamaged day of the stations; the truth dict."""
    return simulate_day(out, stations, rate_hz, seed, workers=2)


def reconstruct_station(out: Path, truth: dict, station_id: int) -> Reconstructed:
    """Reconstruct the station's files with the network settings and its logbook."""
    station = load_network().station(station_id)
    entry = truth["stations"][str(station_id)]
    logbook = out / entry["logbook"] if entry.get("logbook") else None
    entries: list[LogbookEntry] = []
    if logbook is not None and logbook.exists():
        entries, _ = parse_logbook(logbook.read_text(), source=logbook.name)
    files = sorted(
        name for name, f in entry["files"].items() if f["path"] and f["readable"] and f["events"]
    )
    from datetime import UTC, datetime

    results = list(
        reconstruct_files(
            station_id,
            (load_dat(out / entry["files"][name]["path"]) for name in files),
            lambda t: z_positions_at(entries, station_id, datetime.fromtimestamp(t, UTC)),
            station.reconstruction,
        )
    )
    tables = {
        name: pd.read_parquet(out / entry["files"][name]["truth_parquet"]).set_index("line")
        for name in files
    }
    truths = [tables[result.name].loc[result.line] for result in results]
    live = sum(entry["files"][name]["live_s"] for name in files)
    return Reconstructed(
        station,
        entry["parameters"],
        results,
        rates_rows(station_id, results),
        pd.concat(truths, ignore_index=True),
        float(live),
    )


def concat(rec: Reconstructed, name: str) -> np.ndarray:
    """One EventResult field over all chunks."""
    return np.concatenate([getattr(r.events, name) for r in rec.results])


def region_of(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Region index of DOMAIN.md §5.6 (default limits 10° and 40°)."""
    mid = 1 + np.minimum(np.floor((phi + 180) / 45), 7)
    low = 9 + np.minimum(np.floor((phi + 180) / 90), 3)
    return np.where(theta < 10, 0, np.where(theta < 40, mid, low)).astype(int)


def vertical_efficiency(measured: np.ndarray, cos_theta: np.ndarray) -> np.ndarray:
    """Vertical-track plane efficiencies from the 3-of-4 ones measured on tracks of these cosθ.

    A track at θ crosses 1/cosθ more gas, so the 3-of-4 ratio measures the mean of
    1 - (1 - ε)^(1/cosθ) over its tracks, not ε: solved for ε by bisection (the mean grows
    with ε), 60 halvings.
    """
    inv_cos = 1.0 / np.asarray(cos_theta, np.float64)
    result = np.empty(len(measured))
    for k, target in enumerate(measured):
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if np.mean(1 - (1 - mid) ** inv_cos) < target:
                lo = mid
            else:
                hi = mid
        result[k] = 0.5 * (lo + hi)
    return result


def fit_cos_power(
    slope_x: np.ndarray,
    efficiency: np.ndarray,
    half_x: float,
    half_y: float,
    depth: float,
    slope_sigma: float,
) -> tuple[float, float]:
    """Maximum-likelihood n of a cosⁿθ flux from the x slopes (dx/dz) of 4-plane tracks.

    The simulator draws cosⁿθ per solid angle on its generation plane (cosθ = U^(1/(n+1))), so the
    detected density per solid angle is cosⁿθ · A(θ, φ) · E(θ), with
    A = (2X - H tanθ |cosφ|)(2Y - H tanθ |sinφ|) the area through which a straight track crosses
    both the top and the bottom plane (X, Y active half-sizes, H stack depth) and
    E = Π_k (1 - (1 - ε_k)^(1/cosθ)) the 4-plane detection probability, ε_k the *vertical*
    efficiencies (:func:`vertical_efficiency`). Only the x slope is used: it comes from T_dif with
    ~0.8° resolution, whereas the y slope is quantised by the 63-98 mm strips (~4°). The predicted
    x-slope density is integrated on a fine (cosθ, φ) grid and folded with the Gaussian slope
    resolution ``slope_sigma``; the binned likelihood is scanned in steps of 0.005.

    Both corrections matter because n is weakly constrained: the 4-plane acceptance (tanθ ≲ 0.67)
    shapes the slope distribution far more than cosⁿθ does, so with 2·10⁴ tracks σ(n) ≈ 0.25,
    and a 0.014 slope smearing or θ-averaged efficiencies each pull n down by ~0.07-0.1.

    Returns
    -------
    n : float
        The best exponent.
    sigma : float
        Its statistical error: half the width of the ln L ≥ max - 1/2 interval.
    """
    u_axis = np.linspace(0.3, 1.0, 1401)
    u = u_axis[:, None]
    phi = np.linspace(-np.pi, np.pi, 1441)[None, :]
    tan = np.sqrt(1 - u**2) / u
    area = np.clip(2 * half_x - depth * tan * np.abs(np.cos(phi)), 0, None) * np.clip(
        2 * half_y - depth * tan * np.abs(np.sin(phi)), 0, None
    )
    detect = np.prod([1 - (1 - e) ** (1 / u) for e in efficiency], axis=0)
    # weight per (cosθ row, fine x-slope bin): the n-independent part, integrated over φ once
    fine = np.linspace(-1.0, 1.0, 2001)
    centres = 0.5 * (fine[1:] + fine[:-1])
    fine_bin = np.clip(np.digitize(tan * np.cos(phi), fine) - 1, 0, len(centres) - 1)
    rows = np.broadcast_to(np.arange(len(u_axis))[:, None], fine_bin.shape)
    weight = np.bincount(
        (rows * len(centres) + fine_bin).ravel(),
        np.broadcast_to(area * detect, fine_bin.shape).ravel(),
        len(u_axis) * len(centres),
    ).reshape(len(u_axis), len(centres))
    edges = np.linspace(-0.7, 0.7, 71)
    # Gaussian resolution: probability that a true slope at a fine centre lands in each bin
    erf = np.vectorize(math.erf)
    fold = np.diff(erf((edges[None, :] - centres[:, None]) / (slope_sigma * math.sqrt(2))), axis=1)
    observed = np.histogram(slope_x, edges)[0]
    scan = np.arange(1.0, 3.5, 0.005)
    loglike = np.empty(len(scan))
    for i, n in enumerate(scan):
        predicted = (u_axis**n @ weight) @ fold
        predicted = predicted / predicted.sum()
        loglike[i] = float((observed * np.log(np.maximum(predicted, 1e-300))).sum())
    best = int(np.argmax(loglike))
    inside = scan[loglike >= loglike[best] - 0.5]
    return float(scan[best]), float(0.5 * (inside.max() - inside.min()))


def slope_resolution(x: np.ndarray, z_mm: np.ndarray) -> float:
    """x-slope resolution of 4-plane tracks from their own fit residuals (no truth).

    Unweighted straight lines x(z) through the 4 planes: σx² = Σ residual² / (4 - 2) averaged over
    the tracks, and σ(dx/dz) = σx / sqrt(Σ (z - z̄)²).
    """
    zc = np.asarray(z_mm, np.float64) - np.mean(z_mm)
    slope = (x * zc).sum(axis=1) / (zc**2).sum()
    residual = x - x.mean(axis=1, keepdims=True) - slope[:, None] * zc
    sigma_x = np.sqrt(np.mean((residual**2).sum(axis=1) / 2))
    return float(sigma_x / np.sqrt((zc**2).sum()))


def folded_truth_regions(truth: pd.DataFrame, mask: np.ndarray, z_mm: np.ndarray) -> np.ndarray:
    """Regions of the truth tracks seen through the strips: the truth Monte Carlo to compare with.

    For the planes the event has hits in, x is the true position (T_dif resolution, ~5 mm, is
    negligible) and y the centre of the strip the true track crosses, as the detector reports it;
    the same weighted line fit then gives θ, φ and the region. The strip quantisation of y
    (σ ≈ width/√12 ≈ 18-28 mm, ~4° in θ) migrates events between regions, so this folded truth,
    not the generated angles, is what the reconstructed fractions must reproduce.
    """
    from services.reconstruct.events import _line
    from services.reconstruct.geometry import STRIP_CENTRES_MM, STRIP_WIDTHS_MM

    hit = ((mask[:, None] >> np.arange(4)[None, :]) & 1) > 0
    x = truth[[f"x_p{p}" for p in range(1, 5)]].to_numpy(np.float64)
    y_true = truth[[f"y_p{p}" for p in range(1, 5)]].to_numpy(np.float64)
    y = np.empty_like(y_true)
    sig_y = np.empty_like(y_true)
    for p in range(4):
        upper = STRIP_CENTRES_MM[p] + STRIP_WIDTHS_MM[p] / 2
        strip = np.minimum(np.searchsorted(upper[:-1], y_true[:, p]), 3)
        y[:, p] = STRIP_CENTRES_MM[p][strip]
        sig_y[:, p] = STRIP_WIDTHS_MM[p][strip] / np.sqrt(12)
    zr = (z_mm - z_mm[0])[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        sx, _ = _line(np.where(hit, 1.0, 0.0), zr, np.where(hit, x, 0.0))
        sy, _ = _line(np.where(hit, 1 / sig_y**2, 0.0), zr, np.where(hit, y, 0.0))
    sx = np.where(np.abs(sx) < 1e-9, 0.0, sx)  # the kernel's SLOPE_ZERO convention
    sy = np.where(np.abs(sy) < 1e-9, 0.0, sy)
    theta = np.degrees(np.arctan(np.hypot(sx, sy)))
    phi = np.degrees(np.arctan2(sy, sx))
    return region_of(theta, phi)
