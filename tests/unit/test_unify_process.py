"""``mingo process`` on a simulated day: daily files, Parquet twins, rejects, idempotent rerun."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from services.common.stations import load_network
from services.sink.files import day_path, read_csv
from services.unify.cli import REJECTS_FILE, process
from simulator.run import SimulationRequest, run_batch


@pytest.mark.slow
def test_process_simulated_day(tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    request = SimulationRequest(
        out=sim,
        stations=(load_network().station(1),),
        start=date(2024, 3, 1),
        rate_hz=1.0,
        seed=5,
        damage=0.001,
        acceptance_samples=50_000,
    )
    truth = run_batch(request)
    out = tmp_path / "out"
    args = ["--input", str(sim), "--output", str(out), "--stations", "1"]
    result = CliRunner().invoke(process, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    csv = day_path(out, 1, date(2024, 3, 1))
    frame = read_csv(csv)
    assert len(frame) >= 1430 and (frame["revision"] == 0).all()
    assert csv.with_suffix(".parquet").exists()
    assert frame["rate_p_corr_hz"].notna().mean() > 0.95
    rejects = pd.read_csv(out / REJECTS_FILE)
    damaged = truth["stations"]["1"]["totals"]["damaged_lines"]
    assert (rejects["kind"] == "dat").sum() >= damaged
    assert (rejects["kind"] == "log").sum() == truth["stations"]["1"]["totals"]["log_damaged_lines"]
    # the same inputs again: nothing changes, nothing is re-emitted with a higher revision
    again = CliRunner().invoke(process, args, catch_exceptions=False)
    assert "station 1: 0 rows" in again.output
    pd.testing.assert_frame_equal(read_csv(csv), frame)
