"""Issue 5: the corrected rates of ``mingo process`` keep no atmospheric dependence.

Seven simulated days of one station through the batch path (events, reconstruction, logs, ERA5,
unify). For CI speed the station runs at 1 Hz accepted rate (about 0.36 Hz of 3-/4-plane events),
so the coefficients are injected larger than Madrid's (β = -1 %/hPa, α_T = -2 %/K) to be measured
at many σ; unify corrects with the same values (a network file with them).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from services.common.stations import DEFAULT_NETWORK_FILE, load_network
from services.fit.model import fit_column, hourly
from services.unify.cli import process
from simulator.run import SimulationRequest, run_batch

BETA = -1.0
ALPHA_T = -2.0


@pytest.mark.slow
def test_corrected_rates_have_no_residual_dependence(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_NETWORK_FILE.read_text())
    for entry in raw["stations"]:
        if entry["id"] == 1:
            entry["atmosphere"] = {
                **entry.get("atmosphere", {}),
                "beta_pct_per_hpa": BETA,
                "alpha_t_pct_per_k": ALPHA_T,
            }
    network_file = tmp_path / "stations.yaml"
    network_file.write_text(yaml.safe_dump(raw))
    station = load_network(network_file).station(1)
    sim = tmp_path / "sim"
    run_batch(
        SimulationRequest(
            out=sim,
            stations=(station,),
            start=date(2024, 3, 1),
            days=7,
            rate_hz=1.0,
            seed=21,
            acceptance_samples=50_000,
        )
    )
    out = tmp_path / "out"
    args = ["--input", str(sim), "--output", str(out), "--network", str(network_file)]
    result = CliRunner().invoke(process, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(sorted(out.glob("mingo01/*/*/unified_*.parquet")))
    # corrected columns: counts = corrected rate x live time, i.e. the raw counts scaled by the
    # correction factor (within a few %), so the Poisson weights stay right to that precision
    hours = hourly(frame, ("total", "p_corr", "pt_corr"))
    atm = station.atmosphere

    def fit(column: str) -> tuple[float, float, float, float]:
        r = fit_column(hours, column, "teff", atm.p0_hpa, atm.teff_ref_k)
        assert r.hours_used >= 160, r
        return r.beta, r.beta_err, r.coefficients["alpha_t"], r.errors["alpha_t"]

    # the raw rate carries the injected dependence (at many σ: the test can fail)
    beta, beta_err, alpha, alpha_err = fit("total")
    assert abs(beta - BETA) < 2 * beta_err and abs(BETA) > 5 * beta_err
    assert abs(alpha - ALPHA_T) < 2 * alpha_err and abs(ALPHA_T) > 5 * alpha_err
    # pressure-corrected: no residual β, the temperature effect is still there
    beta, beta_err, alpha, alpha_err = fit("p_corr")
    assert abs(beta) < 2 * beta_err
    assert abs(alpha - ALPHA_T) < 2 * alpha_err
    # pressure- and T_eff-corrected: neither
    beta, beta_err, alpha, alpha_err = fit("pt_corr")
    assert abs(beta) < 2 * beta_err
    assert abs(alpha) < 2 * alpha_err
