"""Detection delays of the anomaly detectors over seeds (the "measured" column of docs/alerts.md).

Each event of the issue is injected alone by a simulator scenario (``simulator.scenario``) into an
otherwise quiet station of the minute generator (``simulator.minutes``, 8 Hz; slow control read
every 15 min and interpolated as unify does), at 2 days 5 h 7 min after the start; the delay is
the alert's ``detected`` minus the injection time. The Forbush decrease (3 % over 6 h) is
injected at two stations and found by the network detector: its delay after onset, the onset
error and the depth. Uses ``tests/alert_minutes.py`` (the tests' unified minutes).

Usage (from the repository root)::

    python bench/bench_alert_delays.py                 # 8 seeds, 16 for the Forbush decrease
    python bench/bench_alert_delays.py --seeds 20 --forbush-seeds 40
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.alerts.detectors import detect_forbush, detect_station
from services.common.stations import load_network
from simulator.station import build_station_sim
from tests.alert_minutes import START, scenario, station_frame

AT = START + pd.Timedelta(days=2, hours=5, minutes=7)
CASES: dict[str, tuple[dict[str, object], str]] = {
    "HV trip: HV": ({"kind": "hv_trip", "polarity": "pos", "start": AT}, "hv_out_of_band"),
    "HV trip: current": (
        {"kind": "hv_trip", "polarity": "pos", "start": AT},
        "current_out_of_band",
    ),
    "gas flow failure": (
        {"kind": "gas_flow_failure", "channel": 2, "start": AT},
        "gas_flow_low",
    ),
    "barometer +5 hPa": (
        {"kind": "barometer_step", "start": AT, "change_hpa": 5.0},
        "barometer_mismatch",
    ),
    "efficiency 0.92 -> 0.80": (
        {"kind": "efficiency_drop", "plane": 3, "efficiency": 0.8, "start": AT},
        "efficiency_drop",
    ),
    "2 h data gap": (
        {
            "kind": "data_gap",
            "start": AT.floor("min"),
            "end": AT.floor("min") + pd.Timedelta(hours=2),
        },
        "data_stopped",
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--forbush-seeds", type=int, default=16)
    args = parser.parse_args()
    network = load_network()
    sims = {
        s: build_station_sim(network.station(s), seed=7, acceptance_samples=20_000) for s in (1, 2)
    }
    began = time.perf_counter()
    for name, (event, kind) in CASES.items():
        delays = []
        for seed in range(2, 2 + args.seeds):
            frame = station_frame(sims[1], 3, seed, scenario(event))
            found = [a for a in detect_station(1, frame) if a.kind == kind]
            at = AT.floor("min") if kind == "data_stopped" else AT
            delays.append(
                (found[0].detected - at.to_pydatetime()).total_seconds() / 60 if found else np.nan
            )
        d = np.array(delays)
        print(
            f"{name:24s} {kind:20s} found {np.isfinite(d).sum()}/{d.size}, "
            f"delay {np.nanmin(d):.0f}..{np.nanmax(d):.0f} min"
        )
    onset = START + pd.Timedelta(days=5, hours=3)
    forbush = scenario({"kind": "forbush", "start": onset, "depth_pct": 3.0, "fall_h": 6.0})
    rows = []
    for seed in range(args.forbush_seeds):
        frames = {s: station_frame(sim, 8, 100 * seed + s, forbush) for s, sim in sims.items()}
        found = detect_forbush(frames)
        if found:
            alert = found[0]
            rows.append(
                (
                    (alert.detected - onset.to_pydatetime()).total_seconds() / 3600,
                    (alert.start - onset.to_pydatetime()).total_seconds() / 3600,
                    alert.evidence["depth_pct"],
                )
            )
    r = np.array(rows).reshape(-1, 3)
    print(
        f"Forbush 3 % over 6 h: found {len(rows)}/{args.forbush_seeds}, "
        f"delay {r[:, 0].min():.1f}..{r[:, 0].max():.1f} h, "
        f"onset {r[:, 1].min():+.1f}..{r[:, 1].max():+.1f} h, "
        f"depth {r[:, 2].min():.2f}..{r[:, 2].max():.2f} %"
    )
    print(f"time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
