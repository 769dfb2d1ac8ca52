"""Revision numbers of unified rows: a row is re-emitted, one revision higher, only when it changed.

The streaming service keeps the last emitted row per minute in its state; ``mingo process`` reads
it from the daily files already in the output folder. Either way the same rule applies: a new row
gets revision 0, a changed row the previous revision + 1, an unchanged row is not emitted again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from schemas.models import UnifiedMinute
from services.sink.lineprotocol import QUALITY_SEPARATOR

__all__ = ["assign_revisions", "content_digest", "rows_from_files"]

_Key = tuple[int, datetime]
_NOT_CONTENT = {"revision", "schema_version"}


def _content(row: Any) -> dict[str, Any]:
    return dict(row.model_dump(exclude=_NOT_CONTENT))


def content_digest(row: Any) -> str:
    """A short fingerprint of a row's content (everything but its revision).

    The streaming service keeps this instead of the whole row: two rows with the same digest
    have the same content, so an unchanged row is not emitted again.
    """
    text = row.model_dump_json(exclude=_NOT_CONTENT)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def assign_revisions(rows: Sequence[Any], previous: Iterable[Any]) -> list[Any]:
    """The rows to emit, with their revision, given the rows emitted before.

    Parameters
    ----------
    rows : sequence of UnifiedMinute
        Freshly computed rows (their own revision is ignored).
    previous : iterable of UnifiedMinute
        Rows emitted before (any revisions; per minute the highest counts).

    Returns
    -------
    list of UnifiedMinute
        New minutes at revision 0 and changed minutes at the previous revision + 1, in input
        order; unchanged minutes are left out.
    """
    latest: dict[_Key, Any] = {}
    for row in previous:
        key = (row.station, row.time)
        if key not in latest or row.revision >= latest[key].revision:
            latest[key] = row
    emitted = []
    for row in rows:
        old = latest.get((row.station, row.time))
        if old is None:
            emitted.append(row.model_copy(update={"revision": 0}))
        elif _content(old) != _content(row):
            emitted.append(row.model_copy(update={"revision": old.revision + 1}))
    return emitted


def rows_from_files(frame: pd.DataFrame) -> list[Any]:
    """``UnifiedMinute`` rows of a frame read from the daily files (``services.sink.files``)."""
    if frame.empty:
        return []
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    for record in records:
        text = record["quality"]
        record["quality"] = text.split(QUALITY_SEPARATOR) if text else []
    return [UnifiedMinute.model_validate(r) for r in records]
