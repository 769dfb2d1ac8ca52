"""Injected events: a scenario of disturbances and faults the simulator puts into its output.

A scenario is a YAML file (``mingo simulate --scenario FILE``) with a list of events::

    events:
      - {kind: forbush, start: 2024-03-03T03:00, depth_pct: 3.0, fall_h: 6, recover_h: 48}
      - {kind: barometer_step, station: 1, start: 2024-03-02T05:07, change_hpa: 5.0}
      - {kind: hv_trip, station: 1, start: 2024-03-02T08:00, end: 2024-03-02T09:00}
      - {kind: gas_flow_failure, station: 1, channel: 2, start: 2024-03-02T11:00}
      - {kind: data_gap, station: 1, start: 2024-03-02T14:00, end: 2024-03-02T16:00}

Times are UTC (ISO 8601; a time without zone is UTC); ``end`` is exclusive and optional (absent:
until the end of the simulation). ``station`` absent (or ``stations: [1, 2]``) means every
simulated station. What each kind does, in both the event simulator (``.dat`` files and logs) and
the minute generator (:mod:`simulator.minutes`):

``forbush``
    the cosmic-ray rate falls linearly by ``depth_pct`` over ``fall_h`` hours from ``start``, then
    recovers linearly over ``recover_h`` hours;
``rate_change``
    the rate is multiplied by ``factor`` in ``[start, end)`` (e.g. 0 for chambers without HV);
``barometer_step``
    the outside barometer (``sensors_bus0_``, ``pressure_ext``) reads ``change_hpa`` more from
    ``start`` (a sensor fault: ERA5 and the muon rate do not see it);
``hv_trip``
    the HV supply reads ``kv`` (default 0) on the chosen ``polarity`` (``both``, ``pos``,
    ``neg``) and its currents 0 µA; the chambers' response is not modelled (combine with a
    ``rate_change`` to also lose the muons);
``gas_flow_failure``
    flow meter ``channel`` (1-4; absent: all) reads ``flow`` (default 0);
``efficiency_drop``
    plane ``plane``'s efficiency (3-of-4 ratio) becomes ``efficiency``: minute generator only
    (the event simulator refuses it: its detector efficiencies are fixed per run);
``data_gap``
    the DAQ writes no events in ``[start, end)``: the file running at ``start`` ends there, files
    inside the gap are not written, the first file after it starts at ``end`` (the minute
    generator drops the minutes); slow-control logs continue.

Pure functions of time: :meth:`StationScenario.rate_factor`, :meth:`StationScenario.reading`
(what a slow-control value reads), :meth:`StationScenario.gaps`; :meth:`Scenario.to_truth` is
what ``truth.json`` records.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.common.yamlfile import load_yaml_model


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    station: int | None = Field(None, description="Station id; absent: every station.")
    stations: tuple[int, ...] | None = Field(None, description="Station ids; absent: every one.")
    start: datetime = Field(description="When it starts. [UTC]")
    end: datetime | None = Field(None, description="When it ends (exclusive); absent: never. [UTC]")

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _span(self) -> _Event:
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end {self.end} is not after start {self.start}")
        if self.station is not None and self.stations is not None:
            raise ValueError("give station or stations, not both")
        return self

    def applies_to(self, station: int) -> bool:
        """Whether the event happens at this station."""
        if self.station is not None:
            return self.station == station
        return self.stations is None or station in self.stations

    @property
    def start_s(self) -> float:
        """Start. [s since epoch]"""
        return self.start.timestamp()

    @property
    def end_s(self) -> float:
        """End (inf when open). [s since epoch]"""
        return np.inf if self.end is None else self.end.timestamp()

    def active(self, seconds: np.ndarray) -> np.ndarray:
        """Which of ``seconds`` [s since epoch] lie in ``[start, end)``."""
        t = np.asarray(seconds, dtype=np.float64)
        return (t >= self.start_s) & (t < self.end_s)


class Forbush(_Event):
    """A network-wide decrease of the cosmic-ray rate (linear fall, then linear recovery)."""

    kind: Literal["forbush"]
    depth_pct: float = Field(gt=0, lt=100, description="Depth at the bottom. [%]")
    fall_h: float = Field(gt=0, description="Time from onset to the bottom. [h]")
    recover_h: float = Field(48.0, gt=0, description="Time from the bottom back to normal. [h]")

    def factor(self, seconds: np.ndarray) -> np.ndarray:
        """Rate multiplier at ``seconds``. [1]"""
        t_h = (np.asarray(seconds, dtype=np.float64) - self.start_s) / 3600.0
        depth = self.depth_pct / 100.0
        fall = np.clip(t_h / self.fall_h, 0, 1) * depth
        recover = np.clip((t_h - self.fall_h) / self.recover_h, 0, 1) * depth
        return 1.0 - np.where(t_h > 0, fall - recover, 0.0)


class RateChange(_Event):
    """The rate multiplied by a constant in a span."""

    kind: Literal["rate_change"]
    factor_value: float = Field(alias="factor", ge=0, description="Rate multiplier. [1]")

    def factor(self, seconds: np.ndarray) -> np.ndarray:
        """Rate multiplier at ``seconds``. [1]"""
        return np.where(self.active(seconds), self.factor_value, 1.0)


class BarometerStep(_Event):
    """The outside barometer reads more (or less) than the true pressure."""

    kind: Literal["barometer_step"]
    change_hpa: float = Field(description="Added to the barometer's reading. [hPa]")


class HvTrip(_Event):
    """The HV supply trips: voltage and currents fall."""

    kind: Literal["hv_trip"]
    polarity: Literal["both", "pos", "neg"] = "both"
    kv: float = Field(0.0, description="Voltage read during the trip (magnitude). [kV]")


class GasFlowFailure(_Event):
    """A gas flow meter reads a low flow."""

    kind: Literal["gas_flow_failure"]
    channel: int | None = Field(None, ge=1, le=4, description="Flow meter 1-4; absent: all.")
    flow: float = Field(0.0, ge=0, description="Flow read during the failure. [a.u.]")


class EfficiencyDrop(_Event):
    """A plane's efficiency falls (minute generator only)."""

    kind: Literal["efficiency_drop"]
    plane: int = Field(ge=1, le=4, description="Plane 1-4.")
    efficiency: float = Field(ge=0, le=1, description="Efficiency during the drop. [1]")


class DataGap(_Event):
    """The DAQ writes no events."""

    kind: Literal["data_gap"]


Event = Annotated[
    Forbush | RateChange | BarometerStep | HvTrip | GasFlowFailure | EfficiencyDrop | DataGap,
    Field(discriminator="kind"),
]


class Scenario(BaseModel):
    """The events of one simulation run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: tuple[Event, ...] = ()

    def for_station(self, station: int) -> StationScenario:
        """The events that happen at one station."""
        return StationScenario(tuple(e for e in self.events if e.applies_to(station)))

    def to_truth(self) -> list[dict[str, Any]]:
        """JSON-ready events, as given (times ISO UTC)."""
        return [e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in self.events]


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the reason."""


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file.

    Raises
    ------
    ScenarioError
        Naming the file and what is wrong with it.
    """
    return load_yaml_model(path, Scenario, "scenario", "an 'events' list", ScenarioError)


#: Slow-control values a scenario can change (unified-table names).
READINGS = (
    "pressure_ext",
    "hv_neg",
    "hv_pos",
    "current_neg",
    "current_pos",
    "flow_1",
    "flow_2",
    "flow_3",
    "flow_4",
)


def _flows(channel: int | None) -> tuple[str, ...]:
    return tuple(f"flow_{k}" for k in (1, 2, 3, 4) if channel in (None, k))


class StationScenario:
    """The events of one station, as pure functions of time.

    Parameters
    ----------
    events : sequence of events
        The scenario's events that apply to the station.
    """

    def __init__(self, events: Sequence[Any] = ()) -> None:
        self.events = tuple(events)

    def __bool__(self) -> bool:
        return bool(self.events)

    def to_truth(self) -> list[dict[str, Any]]:
        """JSON-ready events (part of the station's parameters and parameter hash)."""
        return Scenario(events=self.events).to_truth()

    def rate_factor(self, seconds: np.ndarray) -> np.ndarray:
        """Multiplier of the cosmic-ray rate at ``seconds`` [s since epoch]. [1]"""
        factor = np.ones(np.shape(seconds))
        for event in self.events:
            if isinstance(event, Forbush | RateChange):
                factor = factor * event.factor(seconds)
        return factor

    def reading(self, name: str, seconds: np.ndarray, values: np.ndarray) -> np.ndarray:
        """What slow-control value ``name`` (one of :data:`READINGS`) reads at ``seconds``,
        given its fault-free ``values`` (HV as magnitudes or signed: the sign is kept)."""
        if name not in READINGS:
            raise KeyError(f"{name!r} is not a reading a scenario changes ({', '.join(READINGS)})")
        out = np.array(values, dtype=np.float64, copy=True)
        for event in self.events:
            on = event.active(seconds)
            if isinstance(event, BarometerStep) and name == "pressure_ext":
                out = np.where(on, out + event.change_hpa, out)
            elif isinstance(event, HvTrip):
                polarities = ("pos", "neg") if event.polarity == "both" else (event.polarity,)
                if name.endswith(polarities) and name.startswith("hv_"):
                    out = np.where(on, np.sign(out) * event.kv, out)
                elif name.endswith(polarities) and name.startswith("current_"):
                    out = np.where(on, 0.0, out)
            elif isinstance(event, GasFlowFailure) and name in _flows(event.channel):
                out = np.where(on, event.flow, out)
        return out

    def efficiency(self, plane: int, seconds: np.ndarray, value: float) -> np.ndarray:
        """Plane ``plane``'s efficiency at ``seconds`` given its normal ``value``. [1]"""
        out = np.full(np.shape(seconds), value, dtype=np.float64)
        for event in self.events:
            if isinstance(event, EfficiencyDrop) and event.plane == plane:
                out = np.where(event.active(seconds), event.efficiency, out)
        return out

    def gaps(self) -> list[tuple[float, float]]:
        """``[start, end)`` spans without data. [s since epoch]"""
        return [(e.start_s, e.end_s) for e in self.events if isinstance(e, DataGap)]

    def in_gap(self, seconds: np.ndarray) -> np.ndarray:
        """Which of ``seconds`` fall in a data gap."""
        out = np.zeros(np.shape(seconds), dtype=bool)
        for event in self.events:
            if isinstance(event, DataGap):
                out |= event.active(seconds)
        return out

    def event_level_check(self) -> None:
        """Raise ValueError for events the event simulator cannot produce."""
        for event in self.events:
            if isinstance(event, EfficiencyDrop):
                raise ValueError(
                    "efficiency_drop is only produced by the minute generator "
                    "(simulator/minutes.py); the event simulator's efficiencies are fixed"
                )
