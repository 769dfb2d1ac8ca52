"""From derived hours to ``Era5Hour`` records, and which of them to publish (pure).

Message design on ``mingo.era5.hourly.v1``: the key is the station id (co-partitioned with the
other joined topics), so all hours of a station are in one partition in publication order. An
hour is identified by (station, time). It is published once with ``revision`` 0; when its values
change (final ERA5 replacing ERA5T, or any corrected file), it is published again with the next
revision. Consumers keep, per (station, time), the record with the highest revision, which is
also the latest in the partition. Re-running on the same files publishes nothing new
(idempotent), and an ERA5T value never replaces a final one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime

import pandas as pd

from schemas.models import Era5Hour
from services.reanalysis.decode import EXPVER_ERA5T, EXPVER_FINAL

HourKey = tuple[int, datetime]


def _missing(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def hour_records(derived: pd.DataFrame, station: int) -> list[Era5Hour]:
    """``Era5Hour`` records (revision 0) of a derived table (``derive_hours``); NaN -> None."""
    return [
        Era5Hour.model_validate(
            {str(k): (None if _missing(v) else v) for k, v in row.items()}
            | {"station": station, "time": pd.Timestamp(row["time"]).to_pydatetime()}
        )
        for row in derived.to_dict("records")
    ]


def hour_key(record: Era5Hour) -> HourKey:
    """(station, time) of a record."""
    return record.station, record.time


def latest_by_hour(records: Iterable[Era5Hour]) -> dict[HourKey, Era5Hour]:
    """Per (station, time), the record of highest revision (the later one on ties)."""
    latest: dict[HourKey, Era5Hour] = {}
    for record in records:
        key = hour_key(record)
        if key not in latest or record.revision >= latest[key].revision:
            latest[key] = record
    return latest


def _content(record: Era5Hour) -> dict[str, object]:
    return record.model_dump(exclude={"revision", "source_file"})


def to_publish(
    candidates: Iterable[Era5Hour], published: Mapping[HourKey, Era5Hour]
) -> list[Era5Hour]:
    """The records to publish given what is already published (latest per hour).

    Parameters
    ----------
    candidates : iterable of Era5Hour
        Records derived from the files now (revision ignored).
    published : mapping
        Latest published record per (station, time).

    Returns
    -------
    list of Era5Hour
        New hours with revision 0; hours whose values changed with the next revision; nothing
        for unchanged hours (file names alone do not make a revision) or for ERA5T values of an
        hour already published from final ERA5.
    """
    out = []
    for record in candidates:
        previous = published.get(hour_key(record))
        if previous is None:
            out.append(record.model_copy(update={"revision": 0}))
            continue
        if previous.expver == EXPVER_FINAL and record.expver == EXPVER_ERA5T:
            continue
        if _content(previous) != _content(record):
            out.append(record.model_copy(update={"revision": previous.revision + 1}))
    return out
