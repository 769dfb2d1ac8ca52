"""``mingo fit`` on daily files: the table, the figure, versioned records, and their use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from services.common.coefficients import apply_record, latest_record, versions
from services.common.stations import DEFAULT_NETWORK_FILE, load_network
from services.fit.cli import fit
from services.fit.sources import FIT_COLUMNS
from services.sink.files import DailyFiles
from simulator.minutes import simulate_minutes
from simulator.station import build_station_sim
from tests.alert_minutes import START, scenario, station_frame
from tests.sink_rows import unified_row


def rows_of(frame: pd.DataFrame, columns: tuple[str, ...]) -> list[Any]:
    present = [c for c in columns if c in frame]
    return [
        unified_row(1, r["time"].to_pydatetime(), **{c: float(r[c]) for c in present})
        for r in frame.to_dict("records")
    ]


@pytest.mark.unit
def test_fit_command_writes_versioned_records(tmp_path: Path) -> None:
    station = load_network().station(1)
    sim = build_station_sim(station, seed=3, rate_hz=8.0, acceptance_samples=20_000)
    series = simulate_minutes(sim, int(START.timestamp()), 4 * 1440, seed=9)
    out = tmp_path / "out"
    DailyFiles(out, parquet=True).write(rows_of(series.frame, FIT_COLUMNS))
    records = tmp_path / "records"
    args = ["--station", "1", "--start", "2024-03-01", "--end", "2024-03-05", "--input", str(out)]
    args += ["--exclude", "2024-03-04/2024-03-04T12:00", "--write", "--records", str(records)]
    args += ["--png", str(tmp_path / "fit.png")]
    result = CliRunner().invoke(fit, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "total" in result.output and "hours 84 used, 12 excluded" in result.output
    assert (tmp_path / "fit.png").stat().st_size > 10_000
    again = CliRunner().invoke(fit, [*args[:-2], "--png", str(tmp_path / "b.png")])
    assert again.exit_code == 0, again.output
    assert versions(records, 1) == [1, 2]
    record = latest_record(records, 1)
    assert record is not None and record.version == 2 and record.method == "teff"
    assert record.fits[0].column == "total" and len(record.fits) == 14
    total = record.fits[0]
    truth = sim.coefficients
    assert abs(total.beta_pct_per_hpa - truth.beta_pct_per_hpa) < 3 * total.beta_err_pct_per_hpa
    raw = json.loads((records / "mingo01" / "coefficients_v0001.json").read_text())
    assert raw["excluded"] == ["2024-03-04T00:00:00+00:00/2024-03-04T12:00:00+00:00"]
    applied = apply_record(station, record)
    assert applied.atmosphere.beta_pct_per_hpa == total.beta_pct_per_hpa
    assert applied.atmosphere.alpha_t_pct_per_k == total.alpha_t_pct_per_k
    with pytest.raises(ValueError, match="station 1 applied to station 2"):
        apply_record(load_network().station(2), record)


@pytest.mark.unit
def test_fit_command_refuses_an_empty_span(tmp_path: Path) -> None:
    args = ["--station", "1", "--start", "2024-03-01", "--end", "2024-03-02"]
    result = CliRunner().invoke(fit, [*args, "--input", str(tmp_path)])
    assert result.exit_code != 0 and "no unified rows of station 1" in result.output
    result = CliRunner().invoke(fit, [*args, "--exclude", "2024-03-02"])
    assert result.exit_code != 0 and "START/END" in result.output


@pytest.mark.unit
def test_exclude_alerts_uses_the_station_bands(tmp_path: Path) -> None:
    # a 4-hour gas flow failure: --exclude-alerts keeps its hours out of the fit; a network file
    # whose station 1 has no flow alarm (0) does not flag it, so nothing is excluded
    network = load_network()
    sim = build_station_sim(network.station(1), seed=3, acceptance_samples=20_000)
    failure = scenario(
        {"kind": "gas_flow_failure", "start": "2024-03-02T02:00", "end": "2024-03-02T06:00"}
    )
    out = tmp_path / "out"
    DailyFiles(out, parquet=True).write(rows_of(station_frame(sim, 2, 9, failure), FIT_COLUMNS))
    args = ["--station", "1", "--start", "2024-03-01", "--end", "2024-03-03", "--input", str(out)]
    args += ["--exclude-alerts", "--method", "pressure", "--png", str(tmp_path / "fit.png")]
    result = CliRunner().invoke(fit, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # flagged from 01:52 (the interpolation from the last good reading) to 06:xx: 5 hours
    assert "excluded: gas_flow_low 2024-03-02 01:" in result.output
    assert "hours 43 used, 5 excluded" in result.output
    raw = yaml.safe_load(DEFAULT_NETWORK_FILE.read_text())
    for entry in raw["stations"]:
        if entry["id"] == 1:
            entry["alerts"] = {"flow_alarm": 0}
    network_file = tmp_path / "stations.yaml"
    network_file.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(fit, [*args, "--network", str(network_file)])
    assert result.exit_code == 0, result.output
    assert "excluded:" not in result.output and "hours 48 used, 0 excluded" in result.output
