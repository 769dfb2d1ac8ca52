"""Test helpers shared by the simulator, ingest and reconstruct tests.

``simulate_day`` runs the simulator in process; ``strict_valid_line`` is an independent, strict
reading of the station's event-line format (not the ingest parser), used to judge damage.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

from services.common.stations import load_network
from simulator.run import SimulationRequest, run_batch

_VALUE = r"(?:\d{4,}\.\d{4}|-\d{3,}\.\d{4})"
_LINE = re.compile(
    rf"^(\d{{4}}) (\d{{2}}) (\d{{2}}) (\d{{2}}) (\d{{2}}) (\d{{2}}) ([12])(?: {_VALUE}){{64}}$"
)


def strict_valid_line(line: str) -> bool:
    """True for the exact station layout with a real calendar date and time."""
    match = _LINE.match(line)
    if match is None:
        return False
    try:
        year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    return True


def simulate_day(
    out: Path,
    stations: tuple[int, ...],
    rate_hz: float,
    seed: int,
    damage: float = 0.0,
    workers: int = 0,
) -> dict[str, Any]:
    """Simulate 2024-03-01 for the stations of the shipped network into ``out``; the truth."""
    network = load_network()
    request = SimulationRequest(
        out=out,
        stations=tuple(network.station(s) for s in stations),
        start=date(2024, 3, 1),
        days=1,
        seed=seed,
        rate_hz=rate_hz,
        damage=damage,
        workers=workers,
    )
    return run_batch(request)
