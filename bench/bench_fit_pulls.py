"""Pull widths of the atmospheric fit (issue 7): are β and α_T errors Poisson-consistent?

For each seed, 30 days of one station's minute counts are drawn from the simulator's rate model
(``simulator.minutes``: same weather and coefficients as ``mingo simulate``, Poisson counts per
angular region) with injected β and α_T, and fitted (``services.fit.model``, method ``teff``).
The pull (fit - truth) / σ of each coefficient should be N(0, 1) when the errors are right: the
script prints per seed and the mean and standard deviation of the pulls, with the standard
error of the width, sqrt(1/(2(n-1))), and how many seeds recover each value within 2σ.

Usage (from the repository root)::

    python bench/bench_fit_pulls.py                  # 20 seeds, 30 days, 8 Hz
    python bench/bench_fit_pulls.py --seeds 50 --days 30 --rate-hz 8
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.stations import load_network
from services.fit.model import FitResult, fit_all
from simulator.minutes import region_fractions, simulate_minutes
from simulator.station import build_station_sim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rate-hz", type=float, default=8.0)
    parser.add_argument("--beta", type=float, default=-0.162)
    parser.add_argument("--alpha-t", type=float, default=-0.28)
    parser.add_argument("--station", type=int, default=1)
    args = parser.parse_args()
    station = load_network().station(args.station)
    start_s = int(pd.Timestamp("2024-03-01", tz="UTC").timestamp())
    pulls: dict[str, list[float]] = {"beta": [], "alpha_t": []}
    inside: dict[str, int] = {"beta": 0, "alpha_t": 0}
    chi2: list[float] = []
    began = time.perf_counter()
    for seed in range(args.seeds):
        # a new weather and detector per seed: the pulls average over conditions as well
        sim = build_station_sim(
            station,
            seed=1000 + seed,
            rate_hz=args.rate_hz,
            beta_pct_per_hpa=args.beta,
            alpha_t_pct_per_k=args.alpha_t,
            acceptance_samples=20_000,
        )
        series = simulate_minutes(
            sim, start_s, args.days * 1440, seed=seed, fractions=region_fractions(sim)
        )
        atm = sim.coefficients
        _, results = fit_all(series.frame, "teff", atm.p0_hpa, atm.teff_ref_k, columns=("total",))
        total = results["total"]
        assert isinstance(total, FitResult), total
        for name, value, err, truth in (
            ("beta", total.beta, total.beta_err, args.beta),
            ("alpha_t", total.coefficients["alpha_t"], total.errors["alpha_t"], args.alpha_t),
        ):
            pull = (value - truth) / err
            pulls[name].append(pull)
            inside[name] += abs(pull) < 2
        chi2.append(total.chi2_ndf)
        print(
            f"seed {seed:3d}: beta = {total.beta:+.4f} ± {total.beta_err:.4f} %/hPa "
            f"(pull {pulls['beta'][-1]:+.2f}), alpha_t = {total.coefficients['alpha_t']:+.4f} "
            f"± {total.errors['alpha_t']:.4f} %/K (pull {pulls['alpha_t'][-1]:+.2f}), "
            f"chi2/ndf = {total.chi2_ndf:.3f}"
        )
    n = args.seeds
    print(
        f"\n{n} seeds x {args.days} days at {args.rate_hz} Hz accepted, "
        f"{time.perf_counter() - began:.0f} s"
    )
    for name in ("beta", "alpha_t"):
        values = np.array(pulls[name])
        width = values.std(ddof=1)
        print(
            f"{name:8s} pull mean {values.mean():+.3f} ± {width / np.sqrt(n):.3f}, "
            f"width {width:.3f} ± {width / np.sqrt(2 * (n - 1)):.3f}, "
            f"within 2σ: {inside[name]}/{n}"
        )
    print(f"chi2/ndf mean {np.mean(chi2):.3f} (sd {np.std(chi2, ddof=1):.3f})")


if __name__ == "__main__":
    main()
