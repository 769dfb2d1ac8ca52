"""Helpers of the reconstruct physics tests: simulate, reconstruct, compare with the truth."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from services.common.logbook import parse_logbook, z_positions_at
from services.common.stations import Station, load_network
from services.reconstruct.cli import load_dat
from services.reconstruct.pipeline import FileResult, rates_rows, reconstruct_files
from simulator.run import SimulationRequest, run_batch


@dataclass
class Reconstructed:
    """One simulated station: its truth, the reconstruction, the matched per-event truth."""

    station: Station
    params: dict
    results: list[FileResult]
    rows: list[dict]
    truth: pd.DataFrame  #: per-event truth of the coincidence events, in result order
    truth_live_s: float


def simulate(out: Path, stations: tuple[int, ...], rate_hz: float, seed: int = 11) -> dict:
    """Simulate one undamaged day of the stations; the truth dict."""
    network = load_network()
    request = SimulationRequest(
        out=out,
        stations=tuple(network.station(s) for s in stations),
        start=date(2024, 3, 1),
        days=1,
        rate_hz=rate_hz,
        seed=seed,
        workers=2,
    )
    return run_batch(request)


def reconstruct_station(out: Path, truth: dict, station_id: int) -> Reconstructed:
    """Reconstruct the station's files with the network settings and its logbook."""
    station = load_network().station(station_id)
    entry = truth["stations"][str(station_id)]
    logbook = out / entry["logbook"] if entry.get("logbook") else None
    entries = []
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
    truths = []
    for name, result in zip(files, results, strict=True):
        table = pd.read_parquet(out / entry["files"][name]["truth_parquet"]).set_index("line")
        truths.append(table.loc[result.line])
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
    """One EventResult field over all files."""
    return np.concatenate([getattr(r.events, name) for r in rec.results])


def region_of(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Region index of DOMAIN.md §5.6 (default limits 10° and 40°)."""
    mid = 1 + np.minimum(np.floor((phi + 180) / 45), 7)
    low = 9 + np.minimum(np.floor((phi + 180) / 90), 3)
    return np.where(theta < 10, 0, np.where(theta < 40, mid, low)).astype(int)


def fit_cos_power(
    slope_x: np.ndarray,
    efficiency: np.ndarray,
    half_x: float,
    half_y: float,
    depth: float,
) -> float:
    """Maximum-likelihood n of a cosⁿθ flux from the x slopes (dx/dz) of 4-plane tracks.

    The simulator draws cosⁿθ per solid angle on its generation plane (cosθ = U^(1/(n+1))), so the
    detected density per solid angle is cosⁿθ · A(θ, φ) · E(θ), with
    A = (2X - H tanθ |cosφ|)(2Y - H tanθ |sinφ|) the area through which a straight track crosses
    both the top and the bottom plane (X, Y active half-sizes, H stack depth) and
    E = Π_k (1 - (1 - ε_k)^(1/cosθ)) the 4-plane detection probability. Only the x slope is used:
    it comes from T_dif with ~0.6° resolution, whereas the y slope is quantised by the 63-98 mm
    strips (~4°), which would fold a resolution bias into n. The predicted x-slope histogram is
    integrated on a fine (cosθ, φ) grid; the binned likelihood is scanned in steps of 0.005.
    """
    u = np.linspace(0.3, 1.0, 1401)[:, None]
    phi = np.linspace(-np.pi, np.pi, 1441)[None, :]
    tan = np.sqrt(1 - u**2) / u
    area = np.clip(2 * half_x - depth * tan * np.abs(np.cos(phi)), 0, None) * np.clip(
        2 * half_y - depth * tan * np.abs(np.sin(phi)), 0, None
    )
    detect = np.prod([1 - (1 - e) ** (1 / u) for e in efficiency], axis=0)
    weight = area * detect
    edges = np.linspace(-0.7, 0.7, 71)
    grid_bin = np.digitize((tan * np.cos(phi)).ravel(), edges)
    observed = np.bincount(np.digitize(slope_x, edges), minlength=len(edges) + 1)
    best, best_n = -np.inf, np.nan
    for n in np.arange(1.0, 3.5, 0.005):
        predicted = np.bincount(grid_bin, (u**n * weight).ravel(), len(edges) + 1)[1:-1]
        predicted = predicted / predicted.sum()
        loglike = float((observed[1:-1] * np.log(np.maximum(predicted, 1e-300))).sum())
        if loglike > best:
            best, best_n = loglike, float(n)
    return best_n


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
