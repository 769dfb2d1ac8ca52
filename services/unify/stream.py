"""The unify service's state of one station, and what each new record changes (no Kafka).

The streaming service (:mod:`services.unify.service`) hands every record of a station to a
:class:`StationState` built on the station's key-value store (Quix Streams keeps one store per
message key, backed by a changelog topic). The store holds what the join needs, in buckets, so
that a record touches a few small values instead of one large one:

=====================  ==============================================================
key                    value
=====================  ==============================================================
``rates/<hour_s>``     ``{minute_s: MinuteRates JSON}``: the latest record per minute
``logs/<hour_s>``      ``{reading_id: LogReading JSON}``
``era5/<day_s>``       ``{hour_s: Era5Hour JSON}``: the highest revision per hour
``emitted/<hour_s>``   ``{minute_s: [content digest, revision]}`` of the rows emitted
``clock``              newest data time, newest ERA5 hour, start of the retained state
``coefficients``       the newest ``Coefficients`` record from mingo.coefficients.v1
=====================  ==============================================================

A coefficients record (``mingo fit --write --publish``) newer than the one the settings carry
(configuration: version 0, or a record from the folder) replaces the station's β (and α_T) and
recomputes every retained minute: the rows it changes are emitted one revision higher.

A record changes only the minutes it can reach: a minute record its own minute; a log reading
the minutes whose middle is within the log gap of it (interpolation never looks further); an
ERA5 hour the minutes within the ERA5 gap, and, when it is the newest hour, every minute since
the previous newest hour (they are no longer pending). :meth:`StationState.put` stores a record
and notes that span; :meth:`StationState.flush` recomputes the union of the spans noted since
the last flush, once, with :func:`services.unify.join.unify_rows` (the join of ``mingo
process``'s ``unify_frame`` without pandas), on the records that lie within the gaps around them
plus the newest ERA5 hour. Interpolation only uses the two samples around a minute, and only when
they lie within the gap, so this subset gives the same numbers as the whole history. A recomputed
row is emitted only when its content differs from the row emitted before (revision + 1), or when
the minute is new (revision 0). The service flushes once per checkpoint (the records of one Kafka
transaction): a log reading no longer re-emits the hour around it once per reading, and a minute
is emitted at most once per transaction.

State is bounded by a retention (default 100 days) counted back from the newest data time of the
station: whole days older than that are deleted, and records older than that are ignored.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from schemas.models import Coefficients, Era5Hour, LogReading, MinuteRates, UnifiedMinute
from services.common.coefficients import atmosphere_with
from services.common.stations import AtmosphereCoefficients
from services.unify.join import MINUTE_MIDDLE_S, JoinSettings, unify_rows
from services.unify.revisions import content_digest

log = logging.getLogger(__name__)

__all__ = ["DAY_S", "HOUR_S", "KeyValueState", "StationState", "StreamSettings"]

MINUTE_S = 60
HOUR_S = 3600
DAY_S = 86400
_CLOCK = "clock"
_COEFFICIENTS = "coefficients"


class KeyValueState(Protocol):
    """The per-key store the state lives in (a Quix Streams ``State``, or a dict in tests)."""

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""

    def set(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value."""

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error if absent)."""


@dataclass(frozen=True)
class StreamSettings:
    """What the streaming join of one station needs.

    Attributes
    ----------
    coefficients : AtmosphereCoefficients
        Correction coefficients of the station.
    join : JoinSettings
        Maximum interpolation gaps (the same as ``mingo process`` uses).
    retention_s : float
        How far back from the newest data time state is kept. [s]
    coefficients_version : int
        Version of the coefficients record ``coefficients`` come from (0: configuration).
    """

    coefficients: AtmosphereCoefficients
    join: JoinSettings = field(default_factory=JoinSettings)
    retention_s: float = 100 * DAY_S
    coefficients_version: int = 0

    def with_record(self, record: Coefficients) -> StreamSettings:
        """These settings with a coefficients record applied (when it is newer)."""
        if record.version <= self.coefficients_version:
            return self
        coefficients = atmosphere_with(self.coefficients, record)
        return replace(self, coefficients=coefficients, coefficients_version=record.version)


def _floor(t: float, size: int) -> int:
    return math.floor(t / size) * size


def _ceil(t: float, size: int) -> int:
    return math.ceil(t / size) * size


class StationState:
    """The join state of one station and the rows each new record changes.

    Parameters
    ----------
    store : KeyValueState
        The station's key-value store.
    settings : StreamSettings
        Coefficients, gaps and retention.
    """

    def __init__(self, store: KeyValueState, settings: StreamSettings) -> None:
        self.store = store
        stored = store.get(_COEFFICIENTS)
        if stored is not None:
            settings = settings.with_record(Coefficients.model_validate(stored))
        self.settings = settings
        clock = store.get(_CLOCK) or {}
        self.newest_s: int | None = clock.get("newest_s")
        self.era5_newest_s: int | None = clock.get("era5_newest_s")
        self.kept_from_s: int | None = clock.get("kept_from_s")
        self.ignored = 0  #: records older than the retained state
        #: spans ``(low, high)`` of minute starts [s] changed since the last flush
        self._pending: list[tuple[float, float]] = []
        #: values written since the last flush: each is (de)serialised once per flush, not
        #: once per record (an hour's bucket takes 60 minute records)
        self._written: dict[str, Any] = {}

    # -- the inputs -------------------------------------------------------------------------
    def put(self, record: Any) -> None:
        """Store a record (``MinuteRates``, ``LogReading``, ``Era5Hour`` or ``Coefficients``)
        and note the minutes it changes; :meth:`flush` recomputes them."""
        if isinstance(record, Coefficients):
            self._put_coefficients(record)
        elif isinstance(record, LogReading):
            self._put_reading(record)
        elif isinstance(record, Era5Hour):
            self._put_hour(record)
        else:
            self._put_rates(record)

    def add(self, record: Any) -> list[UnifiedMinute]:
        """:meth:`put` and :meth:`flush` one record: the rows it changes."""
        self.put(record)
        return self.flush()

    def flush(self) -> list[UnifiedMinute]:
        """Recompute, once, every minute the records put since the last flush can change; the
        rows to emit (new or changed)."""
        spans = sorted(self._pending)
        self._pending.clear()
        emitted: list[UnifiedMinute] = []
        merged: list[list[float]] = []
        for low, high in spans:
            if merged and low <= merged[-1][1] + MINUTE_S:
                merged[-1][1] = max(merged[-1][1], high)
            else:
                merged.append([low, high])
        for low, high in merged:
            emitted += self._recompute(low, high)
        for name, value in self._written.items():
            self.store.set(name, value)
        self._written.clear()
        return emitted

    def _put_rates(self, record: Any) -> None:
        """A ``MinuteRates`` record (the latest of a minute replaces earlier ones)."""
        minute = int(record.time.timestamp())
        if self._too_old(minute):
            return
        self._put("rates", _floor(minute, HOUR_S), str(minute), record.model_dump(mode="json"))
        self._advance(minute)
        self._pending.append((minute, minute))

    def _put_reading(self, reading: LogReading) -> None:
        """A log reading; the minutes within the log gap of it change."""
        t = reading.time.timestamp()
        if self._too_old(t):
            return
        self._put("logs", _floor(t, HOUR_S), reading.reading_id, reading.model_dump(mode="json"))
        self._advance(int(t))
        gap = self.settings.join.log_max_gap_s
        self._pending.append((t - MINUTE_MIDDLE_S - gap, t - MINUTE_MIDDLE_S + gap))

    def _put_hour(self, hour: Era5Hour) -> None:
        """An ERA5 hour; ignored if a higher revision of the hour is already known."""
        t = int(hour.time.timestamp())
        if self._too_old(t):
            return
        bucket = f"era5/{_floor(t, DAY_S)}"
        hours = self._get(bucket) or {}
        known = hours.get(str(t))
        if known is not None and known["revision"] > hour.revision:
            return
        hours[str(t)] = hour.model_dump(mode="json")
        self._set(bucket, hours)
        gap = self.settings.join.era5_max_gap_s
        low, high = t - MINUTE_MIDDLE_S - gap, t - MINUTE_MIDDLE_S + gap
        previous = self.era5_newest_s
        if previous is None or t > previous:
            # minutes after the previous newest hour were pending; now they are not
            low = min(low, -math.inf if previous is None else previous - MINUTE_MIDDLE_S)
            self.era5_newest_s = t
            self._save_clock()
        self._pending.append((low, high))

    def _put_coefficients(self, record: Coefficients) -> None:
        """A coefficients record; if newer than the ones in use, every retained minute changes
        (the changed rows come out one revision higher)."""
        updated = self.settings.with_record(record)
        if updated is self.settings:
            return
        self._set(_COEFFICIENTS, record.model_dump(mode="json"))
        self.settings = updated
        self._pending.append((-math.inf, math.inf))

    # -- state ------------------------------------------------------------------------------
    def _get(self, name: str) -> Any:
        value = self._written.get(name)
        return self.store.get(name) if value is None else value

    def _set(self, name: str, value: Any) -> None:
        self._written[name] = value

    def _delete(self, name: str) -> None:
        self._written.pop(name, None)
        self.store.delete(name)

    def _put(self, kind: str, bucket_s: int, key: str, value: dict[str, Any]) -> None:
        name = f"{kind}/{bucket_s}"
        bucket = self._get(name) or {}
        bucket[key] = value
        self._set(name, bucket)

    def _too_old(self, t: float) -> bool:
        if self.kept_from_s is not None and t < self.kept_from_s:
            self.ignored += 1
            return True
        return False

    def _save_clock(self) -> None:
        clock = {
            "newest_s": self.newest_s,
            "era5_newest_s": self.era5_newest_s,
            "kept_from_s": self.kept_from_s,
        }
        self._set(_CLOCK, clock)

    def _advance(self, t: int) -> None:
        """Move the newest data time; delete the days that fall out of the retention."""
        if self.newest_s is not None and t <= self.newest_s:
            return
        previous_newest = self.newest_s
        self.newest_s = t
        kept_from = _floor(t - self.settings.retention_s, DAY_S)
        if self.kept_from_s is None:
            self.kept_from_s = kept_from
        elif kept_from > self.kept_from_s:
            assert previous_newest is not None
            # nothing was stored after the previous newest time: the loop stays short
            end = min(kept_from, _floor(previous_newest, DAY_S) + DAY_S)
            for day in range(self.kept_from_s, end, DAY_S):
                self._delete(f"era5/{day}")
                for hour in range(day, day + DAY_S, HOUR_S):
                    for kind in ("rates", "logs", "emitted"):
                        self._delete(f"{kind}/{hour}")
            self.kept_from_s = kept_from
        self._save_clock()

    def _buckets(self, kind: str, low: float, high: float, size: int) -> Iterator[dict[str, Any]]:
        """The stored buckets of ``kind`` that can hold times in ``[low, high]``."""
        for start in range(_floor(low, size), _floor(high, size) + 1, size):
            bucket = self._get(f"{kind}/{start}")
            if bucket:
                yield bucket

    # -- the join ---------------------------------------------------------------------------
    def _recompute(self, low: float, high: float) -> list[UnifiedMinute]:
        """Recompute the stored minutes whose start is in ``[low, high]``; the rows to emit."""
        if self.newest_s is None:
            return []
        low = max(low, self.kept_from_s if self.kept_from_s is not None else low)
        high = min(high, self.newest_s)
        first, last = _ceil(low, MINUTE_S), _floor(high, MINUTE_S)
        emitted: list[UnifiedMinute] = []
        for day in range(_floor(first, DAY_S), last + 1, DAY_S):
            start, end = max(first, day), min(last, day + DAY_S - MINUTE_S)
            if start <= end:
                emitted += self._recompute_span(start, end)
        return emitted

    def _recompute_span(self, first: int, last: int) -> list[UnifiedMinute]:
        rates = [
            record
            for bucket in self._buckets("rates", first, last, HOUR_S)
            for minute, record in bucket.items()
            if first <= int(minute) <= last
        ]
        if not rates:
            return []
        records = [MinuteRates.model_validate(r).model_dump() for r in rates]
        times = [int(r["time"].timestamp()) for r in records]
        middle_low, middle_high = min(times) + MINUTE_MIDDLE_S, max(times) + MINUTE_MIDDLE_S
        join = self.settings.join
        readings = self._readings(middle_low - join.log_max_gap_s, middle_high + join.log_max_gap_s)
        hours = self._hours(middle_low - join.era5_max_gap_s, middle_high + join.era5_max_gap_s)
        return self._revise(unify_rows(records, readings, hours, self.settings.coefficients, join))

    def _readings(self, low: float, high: float) -> list[LogReading]:
        readings = [
            LogReading.model_validate(value)
            for bucket in self._buckets("logs", low, high, HOUR_S)
            for value in bucket.values()
        ]
        return [r for r in readings if low <= r.time.timestamp() <= high]

    def _hours(self, low: float, high: float) -> list[Era5Hour]:
        """ERA5 hours in ``[low, high]``, and the newest hour (it decides what is pending)."""
        if self.era5_newest_s is None:
            return []
        values = [
            value
            for bucket in self._buckets("era5", low, high, DAY_S)
            for hour, value in bucket.items()
            if low <= int(hour) <= high
        ]
        newest = self.era5_newest_s
        if not low <= newest <= high:
            values.append(self._get(f"era5/{_floor(newest, DAY_S)}")[str(newest)])
        return [Era5Hour.model_validate(v) for v in values]

    def _revise(self, rows: list[Any]) -> list[UnifiedMinute]:
        """The rows whose content changed (revision + 1) or that are new (revision 0)."""
        out: list[UnifiedMinute] = []
        by_hour: dict[int, list[Any]] = {}
        for row in rows:
            by_hour.setdefault(_floor(row.time.timestamp(), HOUR_S), []).append(row)
        for hour, hour_rows in by_hour.items():
            name = f"emitted/{hour}"
            emitted = self._get(name) or {}
            changed = False
            for row in hour_rows:
                minute = str(int(row.time.timestamp()))
                digest = content_digest(row)
                previous = emitted.get(minute)
                if previous is not None and previous[0] == digest:
                    continue
                revision = 0 if previous is None else previous[1] + 1
                emitted[minute] = [digest, revision]
                out.append(row.model_copy(update={"revision": revision}))
                changed = True
            if changed:
                self._set(name, emitted)
        return out
