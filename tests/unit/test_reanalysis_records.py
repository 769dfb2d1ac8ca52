"""Which hours are published: new hours, changed hours as revisions, nothing twice."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from schemas.models import Era5Hour
from services.reanalysis.records import hour_records, latest_by_hour, to_publish

pytestmark = pytest.mark.unit

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _hour(expver: str = "0001", temp: float = 5.0, revision: int = 0, **extra: object) -> Era5Hour:
    fields: dict[str, object] = {
        "station": 1,
        "time": T0,
        "temp_ground_c": temp,
        "surface_pressure_hpa": 940.0,
        "temp_100hpa_c": -60.0,
        "height_100hpa_m": 16000.0,
        "t_mw_k": 245.0,
        "t_eff_k": 224.0,
        "expver": expver,
        "revision": revision,
        "source_file": "a.nc",
    }
    return Era5Hour.model_validate(fields | extra)


def test_new_hours_are_published_with_revision_zero() -> None:
    (record,) = to_publish([_hour(revision=7)], {})
    assert record.revision == 0


def test_unchanged_hours_are_not_published_again() -> None:
    published = latest_by_hour([_hour()])
    assert to_publish([_hour(source_file="renamed.nc")], published) == []


def test_final_era5_replacing_era5t_is_the_next_revision() -> None:
    published = latest_by_hour([_hour("0005", 5.5)])
    (record,) = to_publish([_hour("0001", 5.0)], published)
    assert (record.revision, record.expver, record.temp_ground_c) == (1, "0001", 5.0)
    # same values, only the expver changed: still a revision (the hour is now final)
    (same,) = to_publish([_hour("0001", 5.5)], published)
    assert same.revision == 1


def test_era5t_never_replaces_final() -> None:
    assert to_publish([_hour("0005", 9.0)], latest_by_hour([_hour("0001")])) == []


def test_latest_by_hour_takes_the_highest_revision() -> None:
    records = [_hour(temp=1.0), _hour(temp=3.0, revision=2), _hour(temp=2.0, revision=1)]
    assert latest_by_hour(records)[(1, T0)].temp_ground_c == 3.0


def test_hour_records_turn_missing_profiles_into_none() -> None:
    derived = pd.DataFrame(
        {
            "time": [pd.Timestamp(T0)],
            "temp_ground_c": [5.0],
            "surface_pressure_hpa": [940.0],
            "temp_100hpa_c": [-60.0],
            "height_100hpa_m": [16000.0],
            "t_mw_k": [float("nan")],
            "t_eff_k": [float("nan")],
            "expver": ["0005"],
            "source_file": ["a.nc,b.nc"],
        }
    )
    (record,) = hour_records(derived, 3)
    assert (record.station, record.time, record.t_mw_k, record.t_eff_k) == (3, T0, None, None)
    assert record.time_convention == "instant"
