"""The CDS request planner: day splitting, D-5 cut-off, ERA5T refresh, cache keys, area box."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.reanalysis.planner import (
    PRESSURE_LEVELS,
    SINGLE_LEVELS,
    Era5Request,
    area_box,
    day_spans,
    last_requestable_day,
    plan_requests,
)

pytestmark = pytest.mark.unit

MADRID = (40.4168, -3.7038)


def test_day_spans_stay_inside_a_month_and_cover_the_range() -> None:
    assert day_spans(date(2024, 1, 30), date(2024, 3, 2)) == [
        (date(2024, 1, 30), date(2024, 1, 31)),
        (date(2024, 2, 1), date(2024, 2, 29)),
        (date(2024, 3, 1), date(2024, 3, 2)),
    ]
    assert day_spans(date(2024, 3, 1), date(2024, 3, 10), max_days=4) == [
        (date(2024, 3, 1), date(2024, 3, 4)),
        (date(2024, 3, 5), date(2024, 3, 8)),
        (date(2024, 3, 9), date(2024, 3, 10)),
    ]
    assert day_spans(date(2024, 3, 2), date(2024, 3, 1)) == []


@given(
    start=st.dates(date(2020, 1, 1), date(2026, 1, 1)),
    length=st.integers(0, 120),
    max_days=st.integers(1, 40),
)
def test_day_spans_partition_any_range(start: date, length: int, max_days: int) -> None:
    end = start + timedelta(days=length)
    spans = day_spans(start, end, max_days)
    days = [a + timedelta(days=i) for a, b in spans for i in range((b - a).days + 1)]
    assert days == [start + timedelta(days=i) for i in range(length + 1)]
    for a, b in spans:
        assert (a.year, a.month) == (b.year, b.month)
        assert (b - a).days < max_days


def test_area_box_snaps_outwards_to_the_grid_around_the_station() -> None:
    north, west, south, east = area_box(*MADRID)
    assert (north, west, south, east) == (40.75, -4.0, 40.0, -3.25)
    assert south < MADRID[0] - 0.25 < MADRID[0] + 0.25 < north
    assert area_box(40.0, -3.5) == (40.25, -3.75, 39.75, -3.25)  # on the grid: ±0.25°
    assert area_box(89.9, 179.9)[0] == 90.0
    with pytest.raises(ValueError, match="out of range"):
        area_box(91.0, 0.0)


def test_only_days_older_than_the_era5t_delay_are_requested() -> None:
    today = date(2024, 3, 20)
    assert last_requestable_day(today) == date(2024, 3, 15)
    plan = plan_requests(1, *MADRID, date(2024, 3, 1), date(2024, 3, 31), today)
    assert {(r.first_day, r.last_day) for r in plan} == {(date(2024, 3, 1), date(2024, 3, 15))}
    assert sorted(r.dataset for r in plan) == [PRESSURE_LEVELS, SINGLE_LEVELS]
    assert plan_requests(1, *MADRID, date(2024, 3, 16), date(2024, 3, 31), today) == []


def test_request_body_is_the_new_cds_form() -> None:
    (single, pressure) = plan_requests(
        1, *MADRID, date(2024, 3, 1), date(2024, 3, 2), date(2024, 6, 1)
    )
    body = pressure.body()
    assert body["variable"] == ["temperature", "geopotential"]
    assert len(body["pressure_level"]) == 37
    assert body["day"] == ["01", "02"] and body["month"] == ["03"] and body["year"] == ["2024"]
    assert body["time"][0] == "00:00" and len(body["time"]) == 24
    assert body["area"] == [40.75, -4.0, 40.0, -3.25]
    assert body["data_format"] == "netcdf"
    assert "pressure_level" not in single.body()
    assert single.body()["variable"] == ["2m_temperature", "surface_pressure"]
    with pytest.raises(ValueError, match="one month"):
        Era5Request(SINGLE_LEVELS, 1, date(2024, 3, 31), date(2024, 4, 1), (0, 0, 0, 0)).body()


def test_cache_keys_are_stable_and_distinguish_requests() -> None:
    area = area_box(*MADRID)
    base = Era5Request(SINGLE_LEVELS, 1, date(2024, 3, 1), date(2024, 3, 31), area)
    assert (
        base.cache_key()
        == Era5Request(SINGLE_LEVELS, 1, date(2024, 3, 1), date(2024, 3, 31), area).cache_key()
    )
    assert len(base.cache_key()) == 16 and int(base.cache_key(), 16) >= 0
    others = [
        Era5Request(PRESSURE_LEVELS, 1, date(2024, 3, 1), date(2024, 3, 31), area),
        Era5Request(SINGLE_LEVELS, 1, date(2024, 3, 1), date(2024, 3, 30), area),
        Era5Request(SINGLE_LEVELS, 1, date(2024, 3, 1), date(2024, 3, 31), area_box(52.2, 21.0)),
        Era5Request(SINGLE_LEVELS, 1, date(2024, 3, 1), date(2024, 3, 31), area, "final-2024-07"),
    ]
    keys = {base.cache_key(), *(r.cache_key() for r in others)}
    assert len(keys) == 5
    assert base.filename() == f"{SINGLE_LEVELS}_2024-03-01_2024-03-31_{base.cache_key()}.nc"


def test_files_already_downloaded_are_not_requested_again() -> None:
    args = (1, *MADRID, date(2024, 2, 20), date(2024, 3, 10), date(2024, 6, 1))
    plan = plan_requests(*args)
    assert len(plan) == 4
    again = plan_requests(*args, present={plan[0].filename(), plan[3].filename()})
    assert again == plan[1:3]


def test_era5t_days_are_refreshed_once_final_era5_is_due() -> None:
    today = date(2024, 7, 15)
    era5t = {date(2024, 3, 30), date(2024, 3, 31), date(2024, 4, 1), date(2024, 7, 1)}
    args = (1, *MADRID, date(2024, 3, 1), date(2024, 7, 31), today)
    first = {r.filename() for r in plan_requests(*args)}
    plan = plan_requests(*args, present=first, era5t_days=era5t)
    # 2024-07-01 is too recent for final ERA5 (90 days); the others come in per-month spans
    assert {(r.first_day, r.last_day, r.refresh) for r in plan} == {
        (date(2024, 3, 30), date(2024, 3, 31), "final-2024-07"),
        (date(2024, 4, 1), date(2024, 4, 1), "final-2024-07"),
    }
    assert len(plan) == 4  # both datasets
    # done this month: nothing more until next month, then asked again if still ERA5T
    done = first | {r.filename() for r in plan}
    assert plan_requests(*args, present=done, era5t_days=era5t) == []
    next_month = plan_requests(
        1, *MADRID, date(2024, 3, 1), date(2024, 7, 31), date(2024, 8, 2),
        present=done, era5t_days=era5t,
    )  # fmt: skip
    assert {r.refresh for r in next_month if r.refresh} == {"final-2024-08"}
