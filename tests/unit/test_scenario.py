"""Injected events (simulator/scenario.py): the scenario file, the file windows of a data gap, and
one simulated day of events with a barometer step, an HV trip, a gas flow failure and a 2 h data
gap through ``mingo simulate --scenario`` and ``mingo process``, found by the anomaly detectors
within their stated delays (docs/alerts.md)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from schemas.models import Alert
from services.alerts.cli import alerts as alerts_command
from services.alerts.detectors import AlertSettings, detect_station
from services.unify.cli import process
from simulator.cli import simulate
from simulator.events import FileWindow, cut_window
from simulator.scenario import Scenario, ScenarioError, load_scenario

DAY = pd.Timestamp("2024-03-01", tz="UTC")
SCENARIO = """\
# one day of station 1 with four faults, each alone in its hours
events:
  - {kind: barometer_step, station: 1, start: 2024-03-01T04:07, end: 2024-03-01T06:07,
     change_hpa: 5.0}
  - {kind: hv_trip, station: 1, start: 2024-03-01T08:07, end: 2024-03-01T09:07}
  - {kind: gas_flow_failure, station: 1, channel: 3, start: 2024-03-01T11:07, end: 2024-03-01T12:07}
  - {kind: data_gap, station: 1, start: 2024-03-01T15:00, end: 2024-03-01T17:00}
  - {kind: forbush, stations: [2, 3], start: 2024-03-01T12:00, depth_pct: 3, fall_h: 6}
"""


@pytest.mark.unit
def test_scenario_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("events:\n  - {kind: hv_trip, start: 2024-03-01T05:00, volts: 3}\n")
    with pytest.raises(ScenarioError, match=r"(?s)bad\.yaml.*volts"):
        load_scenario(bad)
    bad.write_text("events:\n  - {kind: data_gap, start: 2024-03-01T05:00, end: 2024-03-01}\n")
    with pytest.raises(ScenarioError, match=r"(?s)bad\.yaml.*not after start"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")


@pytest.mark.unit
def test_station_scenario_readings_rate_and_gaps(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path)
    one, two = scenario.for_station(1), scenario.for_station(2)
    assert len(one.events) == 4 and len(two.events) == 1
    t = DAY.timestamp() + 3600.0 * np.array([4.0, 5.0, 8.5, 11.5, 16.0, 18.0])
    assert one.reading("pressure_ext", t, np.full(6, 900.0)).tolist() == [
        900,
        905,
        900,
        900,
        900,
        900,
    ]
    assert one.reading("hv_neg", t, np.full(6, -5.5)).tolist() == [-5.5, -5.5, 0, -5.5, -5.5, -5.5]
    assert one.reading("current_pos", t, np.full(6, 0.5))[2] == 0.0
    assert one.reading("flow_3", t, np.full(6, 1000.0))[3] == 0.0
    assert one.reading("flow_2", t, np.full(6, 1000.0))[3] == 1000.0
    assert one.in_gap(t).tolist() == [False, False, False, False, True, False]
    assert np.all(one.rate_factor(t) == 1.0)
    # the decrease: 3 % at the bottom (6 h after onset), back to normal 48 h later
    bottom = DAY.timestamp() + 18 * 3600.0
    assert two.rate_factor(np.array([bottom]))[0] == pytest.approx(0.97)
    assert two.rate_factor(np.array([bottom + 49 * 3600.0]))[0] == 1.0
    with pytest.raises(KeyError, match="not a reading"):
        one.reading("temperature_ext", t, t)


@pytest.mark.unit
def test_cut_window_by_gaps() -> None:
    w = FileWindow(1, 0, 5, 5, 3605)
    assert cut_window(w, []) == w
    assert cut_window(w, [(1000, 9000)]) == FileWindow(1, 0, 5, 5, 1000)  # runs into a gap
    assert cut_window(w, [(-100, 2000)]) == FileWindow(1, 0, 2000, 2000, 3605)  # starts at its end
    inside = cut_window(w, [(0, 4000)])
    assert inside.live_s == 0
    assert cut_window(w, [(100, 200)]) == FileWindow(1, 0, 5, 5, 100)  # the rest of the hour lost


@pytest.mark.unit
def test_event_simulator_refuses_efficiency_drops(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "events:\n  - {kind: efficiency_drop, plane: 2, efficiency: 0.8, start: 2024-03-01}\n"
    )
    args = ["--stations", "1", "--start", "2024-03-01", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(simulate, [*args, "--scenario", str(path), "--quiet"])
    assert result.exit_code != 0 and "minute generator" in result.output


def _only(alerts: list[Alert], kind: str) -> Alert:
    found = [a for a in alerts if a.kind == kind]
    assert len(found) == 1, [a.message for a in alerts]
    return found[0]


@pytest.mark.slow
def test_simulated_faults_are_detected_through_process(tmp_path: Path) -> None:
    scenario_file = tmp_path / "scenario.yaml"
    scenario_file.write_text(SCENARIO)
    sim, out = tmp_path / "sim", tmp_path / "out"
    args = ["--stations", "1", "--start", "2024-03-01", "--rate-hz", "1", "--seed", "3"]
    args += ["--out", str(sim), "--scenario", str(scenario_file), "--quiet"]
    result = CliRunner().invoke(simulate, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    truth = json.loads((sim / "truth.json").read_text())["stations"]["1"]
    assert (
        truth["scenario"]["events"]
        == Scenario.model_validate(
            {
                "events": [
                    e for e in load_scenario(scenario_file).to_truth() if e.get("station") == 1
                ]
            }
        ).to_truth()
    )
    assert truth["scenario"]["acquisition_gaps"] == [
        ["2024-03-01T15:00:00Z", "2024-03-01T17:00:00Z"]
    ]
    result = CliRunner().invoke(
        process, ["--input", str(sim), "--output", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(sorted(out.glob("mingo01/*/*/unified_*.parquet")))
    # the efficiency limit (0.05) is set for 6-10 Hz stations; at 1 Hz a plane efficiency's
    # statistical noise is sqrt(8) times larger, so is the limit here
    settings = replace(AlertSettings(), eff_max_drop=0.05 * np.sqrt(8))
    alerts = detect_station(1, frame, settings)
    # the four injected faults, and nothing else (an HV trip drops voltage and current)
    kinds = sorted(a.kind for a in alerts)
    assert kinds == sorted(
        [
            "barometer_mismatch",
            "hv_out_of_band",
            "current_out_of_band",
            "gas_flow_low",
            "data_stopped",
        ]
    ), [a.message for a in alerts]

    def delay(alert: Alert, at: str) -> timedelta:
        return alert.detected - pd.Timestamp(at, tz="UTC").to_pydatetime()

    baro = _only(alerts, "barometer_mismatch")
    assert timedelta(0) <= delay(baro, "2024-03-01T04:07") <= timedelta(minutes=45)
    assert baro.evidence["change_hpa"] == pytest.approx(5.0, abs=0.5)
    for kind in ("hv_out_of_band", "current_out_of_band"):
        trip = _only(alerts, kind)
        assert timedelta(minutes=-15) <= delay(trip, "2024-03-01T08:07") <= timedelta(minutes=25)
    gas = _only(alerts, "gas_flow_low")
    assert timedelta(minutes=-15) <= delay(gas, "2024-03-01T11:07") <= timedelta(minutes=30)
    assert "flow_3" in gas.message
    gap = _only(alerts, "data_stopped")
    assert delay(gap, "2024-03-01T15:00") == timedelta(minutes=15)
    assert gap.start == DAY.to_pydatetime() + timedelta(hours=15)
    assert gap.end == DAY.to_pydatetime() + timedelta(hours=17)
    # every fault ended: the alerts are closed
    assert all(a.end is not None for a in alerts)
    # what a user runs: mingo alerts on the files lists the same alerts (with the default
    # efficiency limit, which at 1 Hz may add an efficiency_drop)
    args = ["--input", str(out), "--start", "2024-03-01", "--end", "2024-03-02"]
    listed = CliRunner().invoke(alerts_command, args, catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    for alert in alerts:
        assert f"{alert.start:%Y-%m-%d %H:%M} → {alert.end:%Y-%m-%d %H:%M}" in listed.output
        assert alert.message in listed.output
