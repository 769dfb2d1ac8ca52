"""Planning CDS requests per station and day span (pure functions, no network).

Rules (DOMAIN.md §6):

- Two datasets per span: ``reanalysis-era5-single-levels`` (2 m temperature, surface pressure) and
  ``reanalysis-era5-pressure-levels`` (temperature and geopotential on the 37 levels), hourly.
- A span is a run of consecutive days inside one calendar month (the CDS takes year, month and
  day lists, whose cross product must be exactly the span), at most ``max_days`` long.
- Only days up to ``today - delay_days`` are asked for (ERA5T appears about 5 days behind).
- Days that arrived as ERA5T (expver 0005) are asked for again once older than
  ``final_delay_days`` (final ERA5 replaces ERA5T two to three months later), at most once per
  calendar month of ``today`` (the month is part of the cache key), until they come back final.
- The area is a box [N, W, S, E] on the 0.25° grid containing the station with a margin, so the
  four grid points around the station are always inside.
- Every request has a cache key (a hash of dataset, request body and refresh tag); its file is
  ``<dataset>_<first day>_<last day>_<key>.nc`` and is not downloaded again if present.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from services.common.atmosphere import ERA5_PRESSURE_LEVELS_HPA

SINGLE_LEVELS = "reanalysis-era5-single-levels"
PRESSURE_LEVELS = "reanalysis-era5-pressure-levels"
#: Variables asked for from each dataset.
DATASET_VARIABLES: dict[str, tuple[str, ...]] = {
    SINGLE_LEVELS: ("2m_temperature", "surface_pressure"),
    PRESSURE_LEVELS: ("temperature", "geopotential"),
}
#: ERA5T appears about this many days behind real time. [days]
ERA5T_DELAY_DAYS = 5
#: Final ERA5 replaces ERA5T after about this long. [days]
FINAL_DELAY_DAYS = 90
#: ERA5 grid step. [deg]
GRID_STEP_DEG = 0.25
_HOURS = tuple(f"{h:02d}:00" for h in range(24))


def area_box(
    latitude: float, longitude: float, margin_deg: float = GRID_STEP_DEG
) -> tuple[float, float, float, float]:
    """Area [N, W, S, E] around a station, snapped outwards to the 0.25° grid.

    Parameters
    ----------
    latitude, longitude : float
        Station coordinates; longitude -180..180. [deg]
    margin_deg : float
        Margin on each side before snapping. [deg]

    Returns
    -------
    tuple of float
        North, west, south, east edges. [deg]
    """
    if not -90 <= latitude <= 90 or not -180 <= longitude <= 180:
        raise ValueError(f"station coordinates out of range: {latitude}, {longitude}")

    def snap(value: float, up: bool) -> float:
        steps = value / GRID_STEP_DEG
        rounded = math.ceil(steps - 1e-9) if up else math.floor(steps + 1e-9)
        return round(rounded * GRID_STEP_DEG, 4)

    north = min(snap(latitude + margin_deg, True), 90.0)
    south = max(snap(latitude - margin_deg, False), -90.0)
    return north, snap(longitude - margin_deg, False), south, snap(longitude + margin_deg, True)


def last_requestable_day(today: date, delay_days: int = ERA5T_DELAY_DAYS) -> date:
    """The newest day the CDS is expected to have complete (ERA5T cut-off)."""
    return today - timedelta(days=delay_days)


def day_spans(start: date, end: date, max_days: int = 31) -> list[tuple[date, date]]:
    """Split ``start..end`` (inclusive) into spans inside one month, at most ``max_days`` long."""
    if max_days < 1:
        raise ValueError("max_days must be at least 1")
    spans: list[tuple[date, date]] = []
    first = start
    while first <= end:
        next_month = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
        last = min(end, next_month - timedelta(days=1), first + timedelta(days=max_days - 1))
        spans.append((first, last))
        first = last + timedelta(days=1)
    return spans


def _runs(days: Iterable[date]) -> Iterator[tuple[date, date]]:
    """Consecutive runs of sorted unique days."""
    ordered = sorted(set(days))
    if not ordered:
        return
    first = previous = ordered[0]
    for day in ordered[1:]:
        if day != previous + timedelta(days=1):
            yield first, previous
            first = day
        previous = day
    yield first, previous


@dataclass(frozen=True)
class Era5Request:
    """One CDS request: a dataset, a station's area, a span of days."""

    dataset: str
    station: int
    first_day: date
    last_day: date
    area: tuple[float, float, float, float]
    refresh: str = ""  #: "" for the first fetch; "final-YYYY-MM" for an ERA5T refresh

    def body(self) -> dict[str, Any]:
        """The request body of the CDS API."""
        days = [
            self.first_day + timedelta(days=i)
            for i in range((self.last_day - self.first_day).days + 1)
        ]
        if {(d.year, d.month) for d in days} != {(self.first_day.year, self.first_day.month)}:
            raise ValueError("a request must stay inside one month")
        body: dict[str, Any] = {
            "product_type": ["reanalysis"],
            "variable": list(DATASET_VARIABLES[self.dataset]),
            "year": [f"{self.first_day.year:04d}"],
            "month": [f"{self.first_day.month:02d}"],
            "day": [f"{d.day:02d}" for d in days],
            "time": list(_HOURS),
            "area": list(self.area),
            "data_format": "netcdf",
            "download_format": "unarchived",
        }
        if self.dataset == PRESSURE_LEVELS:
            body["pressure_level"] = [f"{p:g}" for p in ERA5_PRESSURE_LEVELS_HPA]
        return body

    def cache_key(self) -> str:
        """Stable hash of what is asked for (16 hex digits)."""
        text = json.dumps(
            {"dataset": self.dataset, "request": self.body(), "refresh": self.refresh},
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def filename(self) -> str:
        """Name of the downloaded file: ``<dataset>_<first>_<last>_<key>.nc``."""
        return f"{self.dataset}_{self.first_day}_{self.last_day}_{self.cache_key()}.nc"


def plan_requests(
    station: int,
    latitude: float,
    longitude: float,
    start: date,
    end: date,
    today: date,
    *,
    present: Collection[str] = (),
    era5t_days: Collection[date] = (),
    max_days: int = 31,
    delay_days: int = ERA5T_DELAY_DAYS,
    final_delay_days: int = FINAL_DELAY_DAYS,
) -> list[Era5Request]:
    """The requests still to make for a station, oldest first.

    Parameters
    ----------
    station : int
        Station id.
    latitude, longitude : float
        Station coordinates. [deg]
    start, end : date
        Days wanted (inclusive, UTC).
    today : date
        The current UTC day.
    present : collection of str
        File names already downloaded (their requests are not repeated).
    era5t_days : collection of date
        Days whose data on disk is still ERA5T.
    max_days : int
        Longest span of one request. [days]
    delay_days, final_delay_days : int
        ERA5T delay and the age after which ERA5T days are fetched again. [days]

    Returns
    -------
    list of Era5Request
        Single- and pressure-level requests per span, then the ERA5T refreshes.
    """
    area = area_box(latitude, longitude)
    last = min(end, last_requestable_day(today, delay_days))
    spans = [(a, b, "") for a, b in day_spans(start, last, max_days)]
    refresh_until = today - timedelta(days=final_delay_days)
    stale = [d for d in era5t_days if start <= d <= min(end, refresh_until)]
    tag = f"final-{today:%Y-%m}"
    spans += [(a, b, tag) for run in _runs(stale) for a, b in day_spans(*run, max_days)]
    planned = [
        Era5Request(dataset, station, a, b, area, refresh)
        for a, b, refresh in spans
        for dataset in (SINGLE_LEVELS, PRESSURE_LEVELS)
    ]
    names = set(present)
    return [r for r in planned if r.filename() not in names]
