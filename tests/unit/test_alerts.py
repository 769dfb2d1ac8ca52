"""Anomaly detectors (services/alerts) on simulated minutes with injected events.

Each event is injected alone into an otherwise quiet simulated station (Poisson counts from the
simulator's rate model, slow control read every 15 min and interpolated as unify does), and must
be the only alert, detected within its stated delay (docs/alerts.md).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from schemas.models import Alert
from services.alerts.detectors import (
    AlertSettings,
    detect_forbush,
    detect_station,
    held_runs,
    runs,
)
from services.alerts.service import DETECTOR_COLUMNS, AlertsOptions, AlertsState
from services.alerts.settings import AlertsSettings
from services.common.stations import DEFAULT_NETWORK_FILE, AlertThresholds, load_network
from simulator.station import StationSim, build_station_sim
from tests.alert_minutes import START, scenario, station_frame
from tests.sink_rows import unified_row

FAULT_AT = START + pd.Timedelta(days=2, hours=5, minutes=7)


@pytest.fixture(scope="module")
def sims() -> dict[int, StationSim]:
    network = load_network()
    return {
        s: build_station_sim(network.station(s), seed=7, acceptance_samples=20_000) for s in (1, 2)
    }


def rows_of(frame: pd.DataFrame) -> list[Any]:
    present = [c for c in DETECTOR_COLUMNS if c in frame]
    return [
        unified_row(1, r["time"].to_pydatetime(), **{c: float(r[c]) for c in present})
        for r in frame.to_dict("records")
    ]


def only(alerts: list[Alert], kind: str) -> Alert:
    assert [a.kind for a in alerts] == [kind], [a.message for a in alerts]
    return alerts[0]


def delay(alert: Alert, at: pd.Timestamp) -> timedelta:
    return alert.detected - at.to_pydatetime()


@pytest.mark.unit
def test_runs_and_hysteresis() -> None:
    mask = np.array([0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1], dtype=bool)
    assert runs(mask, 3) == [(1, 4), (8, 12)]
    hold = np.array([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], dtype=bool)
    assert held_runs(mask, hold, 3) == [(1, 12)]


@pytest.mark.unit
def test_thirty_quiet_days_raise_nothing(sims: dict[int, StationSim]) -> None:
    frame = station_frame(sims[1], 30, seed=1)
    assert detect_station(1, frame) == []


@pytest.mark.unit
def test_hv_trip(sims: dict[int, StationSim]) -> None:
    trip = scenario({"kind": "hv_trip", "polarity": "pos", "start": FAULT_AT})
    frame = station_frame(sims[1], 3, seed=2, scenario=trip)
    # the supply's voltage and current both fall: two alerts of the same trip
    found = detect_station(1, frame)
    assert sorted(a.kind for a in found) == ["current_out_of_band", "hv_out_of_band"]
    for alert in found:
        # interpolation between 15-min readings lowers the HV up to one reading before the trip
        assert timedelta(minutes=-15) <= delay(alert, FAULT_AT) <= timedelta(minutes=25)
        assert alert.end is None and alert.severity == "critical"
    hv = next(a for a in found if a.kind == "hv_out_of_band")
    assert hv.evidence["hv_pos_kv"] == 0.0 and "hv_neg_kv" not in hv.evidence


@pytest.mark.unit
def test_gas_flow_failure(sims: dict[int, StationSim]) -> None:
    failure = scenario({"kind": "gas_flow_failure", "channel": 2, "start": FAULT_AT})
    frame = station_frame(sims[1], 3, seed=3, scenario=failure)
    alert = only(detect_station(1, frame), "gas_flow_low")
    assert timedelta(minutes=-15) <= delay(alert, FAULT_AT) <= timedelta(minutes=30)
    assert "flow_2" in alert.message


@pytest.mark.unit
def test_barometer_step(sims: dict[int, StationSim]) -> None:
    fault = scenario({"kind": "barometer_step", "start": FAULT_AT, "change_hpa": 5.0})
    frame = station_frame(sims[1], 3, seed=4, scenario=fault)
    alert = only(detect_station(1, frame), "barometer_mismatch")
    assert timedelta(0) <= delay(alert, FAULT_AT) <= timedelta(minutes=45)
    assert alert.evidence["change_hpa"] == pytest.approx(5.0, abs=0.5)


@pytest.mark.unit
def test_efficiency_drop(sims: dict[int, StationSim]) -> None:
    fault = scenario({"kind": "efficiency_drop", "plane": 3, "efficiency": 0.80, "start": FAULT_AT})
    frame = station_frame(sims[1], 3, seed=5, scenario=fault)
    alert = only(detect_station(1, frame), "efficiency_drop")
    assert timedelta(0) <= delay(alert, FAULT_AT) <= timedelta(minutes=75)
    assert alert.evidence["plane"] == 3


@pytest.mark.unit
def test_two_hour_data_gap(sims: dict[int, StationSim]) -> None:
    gap = (FAULT_AT.floor("min"), FAULT_AT.floor("min") + pd.Timedelta(hours=2))
    events = scenario({"kind": "data_gap", "start": gap[0], "end": gap[1]})
    frame = station_frame(sims[1], 3, seed=6, scenario=events)
    alert = only(detect_station(1, frame), "data_stopped")
    assert delay(alert, gap[0]) == timedelta(minutes=15)
    assert alert.start == gap[0].to_pydatetime() and alert.end == gap[1].to_pydatetime()
    # streaming view: the data stop at the end, "now" 20 minutes later -> an open alert
    head = frame[frame["time"] < gap[0]]
    alert = only(detect_station(1, head, now=gap[0] + pd.Timedelta(minutes=20)), "data_stopped")
    assert alert.end is None and delay(alert, gap[0]) == timedelta(minutes=15)


@pytest.mark.unit
def test_logs_stopped(sims: dict[int, StationSim]) -> None:
    frame = station_frame(sims[1], 3, seed=8)
    silent = (frame["time"] >= FAULT_AT) & (frame["time"] < FAULT_AT + pd.Timedelta(hours=3))
    for column in ("pressure_ext", "temperature_ext", "hv_neg", "hv_pos", "accepted"):
        frame.loc[silent, column] = np.nan
    frame.loc[silent, ["current_neg", "current_pos"]] = np.nan
    for k in (1, 2, 3, 4):
        frame.loc[silent, f"flow_{k}"] = np.nan
    frame.loc[silent, "rate_p_corr_hz"] = np.nan
    frame.loc[silent, "rate_pt_corr_hz"] = np.nan
    alert = only(detect_station(1, frame), "logs_stopped")
    assert delay(alert, FAULT_AT.ceil("min")) == timedelta(minutes=60)


@pytest.mark.unit
def test_network_forbush_decrease(sims: dict[int, StationSim]) -> None:
    onset = START + pd.Timedelta(days=5, hours=3)
    days = 8
    forbush = scenario({"kind": "forbush", "start": onset, "depth_pct": 3.0, "fall_h": 6.0})
    frames = {s: station_frame(sim, days, seed=s, scenario=forbush) for s, sim in sims.items()}
    alerts = detect_forbush(frames)
    assert len(alerts) == 1, [a.message for a in alerts]
    alert = alerts[0]
    assert alert.kind == "forbush_candidate" and alert.station is None
    assert alert.stations == [1, 2]
    assert timedelta(0) < delay(alert, onset) <= timedelta(hours=10)
    assert abs(alert.start - onset.to_pydatetime()) <= timedelta(hours=2)
    assert 2.0 <= alert.evidence["depth_pct"] <= 4.5
    # quiet stations: no candidate
    quiet = {s: station_frame(sim, days, seed=10 + s) for s, sim in sims.items()}
    assert detect_forbush(quiet) == []


@pytest.mark.unit
def test_alerts_state_emits_new_and_changed_alerts_only(sims: dict[int, StationSim]) -> None:
    sim = sims[1]
    trip = START + pd.Timedelta(hours=20)
    events = scenario({"kind": "hv_trip", "polarity": "pos", "start": trip})
    frame = station_frame(sim, 1.5, seed=4, scenario=events)
    state = AlertsState(AlertsOptions(wall_clock=False))
    cut = trip + pd.Timedelta(hours=2)
    first = state.add(rows_of(frame[frame["time"] < cut]))
    emitted: list[Alert] = state.evaluate(first)
    assert sorted(a.kind for a in emitted) == ["current_out_of_band", "hv_out_of_band"]
    assert all(a.end is None for a in emitted)
    # the same data again: nothing new
    state.add(rows_of(frame[frame["time"] < cut]))
    assert state.evaluate({1}) == []
    # the HV comes back: the same alert, now closed
    back = frame[frame["time"] >= cut].copy()
    back["hv_pos"], back["current_pos"] = 5.5, 0.52
    state.add(rows_of(back))
    closed = state.evaluate({1})
    assert sorted(a.alert_id for a in closed) == sorted(a.alert_id for a in emitted)
    assert all(a.end == cut.to_pydatetime() for a in closed)


@pytest.mark.unit
def test_per_station_bands_change_the_outcome(sims: dict[int, StationSim]) -> None:
    # a station whose flow meters read about 1000 but whose configured alarm is 1100 alarms on
    # normal flow; one whose HV band is 5.6-6.0 kV alarms on its 5.5 kV; the defaults do neither
    frame = station_frame(sims[1], 1, seed=9)
    assert detect_station(1, frame) == []
    network = load_network()
    station = network.station(1)
    assert station.alerts == AlertThresholds()  # the shipped config spells out the defaults
    strict = station.model_copy(
        update={"alerts": AlertThresholds(flow_alarm=1100.0, hv_band_kv=(5.6, 6.0))}
    )
    options = AlertsOptions(wall_clock=False, thresholds={1: strict.alerts})
    kinds = {a.kind for a in detect_station(1, frame, options.detectors_for(1))}
    assert kinds == {"gas_flow_low", "hv_out_of_band"}
    assert options.detectors_for(2) == AlertSettings()
    # and through the service's state
    state = AlertsState(options)
    emitted = state.evaluate(state.add(rows_of(frame)))
    assert {a.kind for a in emitted} == {"gas_flow_low", "hv_out_of_band"}
    assert emitted[0].evidence.get("band_low_au", 1100.0) == 1100.0
    with pytest.raises(ValueError, match="hv_band_kv"):
        AlertThresholds(hv_band_kv=(6.0, 5.0))


@pytest.mark.unit
def test_service_settings_take_the_bands_from_the_network_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = yaml.safe_load(DEFAULT_NETWORK_FILE.read_text())
    for entry in raw["stations"]:
        if entry["id"] == 2:
            entry["alerts"] = {"flow_alarm": 1100, "hv_band_kv": [5.2, 5.8]}
    network_file = tmp_path / "stations.yaml"
    network_file.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MINGO_NETWORK_FILE", str(network_file))
    options = AlertsSettings().alerts_options()
    assert options.detectors_for(2).flow_alarm == 1100
    assert options.detectors_for(2).hv_band_kv == (5.2, 5.8)
    assert options.detectors_for(1) == AlertSettings()
