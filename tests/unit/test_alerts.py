"""Anomaly detectors (services/alerts) on simulated minutes with injected events.

Each event is injected alone into an otherwise quiet simulated station (Poisson counts from the
simulator's rate model, slow control read every 15 min and interpolated as unify does), and must
be the only alert, detected within its stated delay (docs/alerts.md).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from schemas.models import Alert
from services.alerts.detectors import detect_forbush, detect_station, held_runs, runs
from services.alerts.service import DETECTOR_COLUMNS, AlertsOptions, AlertsState
from services.common.stations import load_network
from simulator.station import StationSim, build_station_sim
from tests.alert_minutes import (
    START,
    Injected,
    efficiency_drop,
    forbush_factor,
    station_frame,
    step,
)
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
    frame = station_frame(
        sims[1], 3, seed=2, injected=Injected(faults=(step("hv_pos", FAULT_AT, 0.0),))
    )
    alert = only(detect_station(1, frame), "hv_out_of_band")
    # interpolation between 15-min readings lowers the HV up to one reading before the trip
    assert timedelta(minutes=-15) <= delay(alert, FAULT_AT) <= timedelta(minutes=25)
    assert alert.end is None and alert.severity == "critical"
    assert alert.evidence["hv_pos_kv"] == 0.0


@pytest.mark.unit
def test_gas_flow_failure(sims: dict[int, StationSim]) -> None:
    frame = station_frame(
        sims[1], 3, seed=3, injected=Injected(faults=(step("flow_2", FAULT_AT, 0.0),))
    )
    alert = only(detect_station(1, frame), "gas_flow_low")
    assert timedelta(minutes=-15) <= delay(alert, FAULT_AT) <= timedelta(minutes=30)
    assert "flow_2" in alert.message


@pytest.mark.unit
def test_barometer_step(sims: dict[int, StationSim]) -> None:
    fault = step("baro_step", FAULT_AT, 5.0, add=True)
    frame = station_frame(sims[1], 3, seed=4, injected=Injected(faults=(fault,)))
    alert = only(detect_station(1, frame), "barometer_mismatch")
    assert timedelta(0) <= delay(alert, FAULT_AT) <= timedelta(minutes=45)
    assert alert.evidence["change_hpa"] == pytest.approx(5.0, abs=0.5)


@pytest.mark.unit
def test_efficiency_drop(sims: dict[int, StationSim]) -> None:
    fault = efficiency_drop(3, FAULT_AT, 0.80)
    frame = station_frame(sims[1], 3, seed=5, injected=Injected(faults=(fault,)))
    alert = only(detect_station(1, frame), "efficiency_drop")
    assert timedelta(0) <= delay(alert, FAULT_AT) <= timedelta(minutes=75)
    assert alert.evidence["plane"] == 3


@pytest.mark.unit
def test_two_hour_data_gap(sims: dict[int, StationSim]) -> None:
    gap = (FAULT_AT.floor("min"), FAULT_AT.floor("min") + pd.Timedelta(hours=2))
    frame = station_frame(sims[1], 3, seed=6, injected=Injected(gap=gap))
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
    factor = forbush_factor(days * 1440, onset, depth=0.03, fall_h=6.0)
    frames = {
        s: station_frame(sim, days, seed=s, injected=Injected(extra_factor=factor))
        for s, sim in sims.items()
    }
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
    frame = station_frame(sim, 1.5, seed=4, injected=Injected(faults=(step("hv_pos", trip, 0.0),)))
    state = AlertsState(AlertsOptions(wall_clock=False))
    cut = trip + pd.Timedelta(hours=2)
    first = state.add(rows_of(frame[frame["time"] < cut]))
    emitted: list[Alert] = state.evaluate(first)
    assert [a.kind for a in emitted] == ["hv_out_of_band"] and emitted[0].end is None
    # the same data again: nothing new
    state.add(rows_of(frame[frame["time"] < cut]))
    assert state.evaluate({1}) == []
    # the HV comes back: the same alert, now closed
    back = frame[frame["time"] >= cut].copy()
    back["hv_pos"] = 5.5 + np.zeros(len(back))
    state.add(rows_of(back))
    closed = state.evaluate({1})
    assert [a.alert_id for a in closed] == [emitted[0].alert_id]
    assert closed[0].end == cut.to_pydatetime()
