"""The streaming state of unify: final rows equal the batch join, revisions, retention."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.models import Coefficients, Era5Hour, LogReading, MinuteRates
from services.common.coefficients import apply_record, write_record
from services.common.stations import AtmosphereCoefficients, load_network
from services.unify.flags import Flag
from services.unify.join import JoinSettings, to_rows, unify_frame
from services.unify.service import Unifier, UnifyOptions
from services.unify.stream import DAY_S, StationState, StreamSettings
from tests.coefficient_records import teff_record
from tests.unify_records import JsonStore, minute_rates

pytestmark = pytest.mark.unit

T0 = datetime(2024, 3, 1, tzinfo=UTC)
SETTINGS = StreamSettings(AtmosphereCoefficients(), JoinSettings(log_max_gap_s=1800.0))


def _readings(minutes: range, rng: random.Random) -> list[LogReading]:
    readings = []
    for line, k in enumerate(minutes, start=1):
        if 100 <= k < 150:
            continue  # a 50 min hole: missing beyond the 30 min gap
        pressure = 2000.0 if k == 195 else 940.0 + rng.uniform(-3, 3)
        readings.append(
            LogReading(
                station=1,
                source="sensors_ext",
                time=T0 + timedelta(minutes=k, seconds=7),
                values={"temperature_ext": 12.0, "rh_ext": 40.0, "pressure_ext": pressure},
                units={"temperature_ext": "degC", "rh_ext": "%", "pressure_ext": "hPa"},
                out_of_range=["pressure_ext"] if k == 195 else [],
                source_file="sensors_bus0_2024-03-01.log",
                line=line,
                reading_id=f"1/sensors_bus0_2024-03-01.log/{line}",
            )
        )
    return readings


def _hour(hour: int, teff: float, expver: str = "0001", revision: int = 0) -> Era5Hour:
    return Era5Hour(
        station=1,
        time=T0 + timedelta(hours=hour),
        temp_ground_c=5.0 + hour,
        surface_pressure_hpa=930.0 + hour,
        temp_100hpa_c=-55.0,
        height_100hpa_m=16000.0,
        t_eff_k=teff,
        expver=expver,
        revision=revision,
        source_file="x.nc",
    )


def _final(emitted: list[Any]) -> dict[datetime, Any]:
    latest: dict[datetime, Any] = {}
    for row in emitted:
        assert row.time not in latest or row.revision == latest[row.time].revision + 1
        latest[row.time] = row
    return latest


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "per_flush"), [(1, 1), (2, 1), (1, 40), (2, 7), (1, 10_000)])
def test_final_rows_equal_the_batch_join_in_any_arrival_order(seed: int, per_flush: int) -> None:
    # per_flush: records per flush, as the service flushes once per checkpoint, each checkpoint
    # with a fresh StationState on the same store
    rng = random.Random(seed)
    rates = minute_rates(range(200), rng)
    # a minute published twice (shared by two files): the later record wins
    rates.append(rates[30].model_copy(update={"live_s": 60.0, "rate_total_hz": 8.5}))
    readings = _readings(range(0, 260, 15), rng)
    hours = [_hour(h, 220.0 + h, expver="0005") for h in range(4)]
    hours += [_hour(3, 223.5, revision=1)]  # final ERA5 replaces ERA5T of hour 3
    records: list[Any] = [*rates, *readings, *hours]
    order = sorted(range(len(records)), key=lambda _: rng.random())
    # the order within each input stays as published (a topic partition keeps it)
    for kind in (MinuteRates, LogReading, Era5Hour):
        places = [p for p, i in enumerate(order) if isinstance(records[i], kind)]
        for place, i in zip(places, sorted(order[p] for p in places), strict=True):
            order[place] = i
    store = JsonStore()
    emitted = []
    for start in range(0, len(order), per_flush):
        state = StationState(store, SETTINGS)
        for i in order[start : start + per_flush]:
            state.put(records[i])
        emitted += state.flush()

    last_rates = {r.time: r.model_dump() for r in rates}
    batch = to_rows(
        unify_frame(
            list(last_rates.values()), readings, hours, SETTINGS.coefficients, SETTINGS.join
        )
    )
    assert any(row.quality_flags & Flag.ENV_OUT_OF_RANGE for row in batch)
    assert any(row.quality_flags & Flag.ERA5_PENDING for row in batch)
    final = _final(emitted)
    assert sorted(final) == [row.time for row in batch]
    for row in batch:
        assert final[row.time].model_copy(update={"revision": 0}) == row
    if per_flush >= len(records):  # one flush: every minute once, as mingo process writes it
        assert len(emitted) == len(batch)


def test_revisions_pending_then_era5t_then_final_then_late_logs() -> None:
    rng = random.Random(7)
    state = StationState(JsonStore(), SETTINGS)
    first = [row for r in minute_rates(range(120), rng) for row in state.add(r)]
    assert len(first) == 120 and all(r.revision == 0 for r in first)
    assert all(r.quality_flags & Flag.ERA5_PENDING for r in first)
    era5t = [row for h in range(3) for row in state.add(_hour(h, 221.0, "0005"))]
    assert {r.time for r in era5t} == {r.time for r in first}
    assert all(r.revision == 1 and r.quality_flags & Flag.ERA5_PRELIMINARY for r in era5t)
    final = [row for h in range(3) for row in state.add(_hour(h, 222.0, revision=1))]
    assert {r.time for r in final} == {r.time for r in first}
    after_final = _final([*first, *era5t, *final])
    # hour by hour: a minute between two hours changes when each of them turns final
    assert {r.revision for r in after_final.values()} == {3}
    assert not any(r.quality_flags & Flag.ERA5_PRELIMINARY for r in after_final.values())
    # an ERA5T revision older than what is known changes nothing
    assert state.add(_hour(1, 221.0, "0005")) == []
    # logs three hours late: only the minutes within 30 min of each reading change
    readings = _readings(range(0, 120, 15), rng)
    late = [row for r in readings for row in state.add(r)]
    latest = _final([*first, *era5t, *final, *late])
    # readings 00:00:07 .. 01:30:07 every 15 min: the minutes between them get log values
    with_logs = {t for t, row in latest.items() if row.pressure_ext is not None}
    assert {r.time for r in late} == with_logs
    assert min(with_logs) == T0 and max(with_logs) == T0 + timedelta(minutes=89)
    for minute in with_logs:
        assert latest[minute].revision == after_final[minute].revision + 1
    # the same reading again: nothing to emit
    assert state.add(readings[0]) == []


def test_retention_drops_old_days_and_ignores_older_records() -> None:
    rng = random.Random(3)
    store = JsonStore()
    state = StationState(store, StreamSettings(AtmosphereCoefficients(), retention_s=2 * DAY_S))
    old = minute_rates(range(3), rng)
    for record in old:
        state.add(record)
    assert "rates/" + str(int(T0.timestamp())) in store.data
    later = minute_rates(range(4 * 1440, 4 * 1440 + 2), rng)
    for record in later:
        state.add(record)
    assert not any(key.endswith(str(int(T0.timestamp()))) for key in store.data)
    assert state.add(old[0]) == [] and state.ignored == 1
    # a restarted instance reads the same clock from the store
    again = StationState(store, state.settings)
    assert (again.newest_s, again.kept_from_s) == (state.newest_s, state.kept_from_s)


def _record(version: int, beta: float) -> Coefficients:
    return teff_record(1, version, beta, -0.25)


def test_unifier_applies_the_newest_coefficients_record(tmp_path: Path) -> None:
    network = load_network()
    record = _record(1, -0.15)
    write_record(tmp_path, record)
    with_records = Unifier(network, UnifyOptions(instance="t", coefficients_dir=tmp_path))
    expected = apply_record(network.station(1), record).atmosphere
    assert with_records.settings(1).coefficients == expected
    assert expected.beta_pct_per_hpa == -0.15 and expected.p0_hpa == 945.0
    # no record for station 2, no folder at all: the configured coefficients
    assert with_records.settings(2).coefficients == network.station(2).atmosphere
    plain = Unifier(network, UnifyOptions(instance="t"))
    assert plain.settings(1).coefficients == network.station(1).atmosphere
    # a station outside the network: the defaults
    assert plain.settings(7).coefficients == AtmosphereCoefficients()


def test_a_coefficients_record_recorrects_the_retained_minutes() -> None:
    rng = random.Random(5)
    store = JsonStore()
    state = StationState(store, SETTINGS)
    rates = minute_rates(range(120), rng)
    readings = _readings(range(0, 135, 15), rng)
    hours = [_hour(h, 221.0 + h) for h in range(3)]
    records: list[Any] = [*hours, *readings, *rates]
    first = _final([row for r in records for row in state.add(r)])
    # a fit published to mingo.coefficients.v1: every minute with a pressure is recorrected
    record = _record(3, -0.15)
    revised = state.add(record)
    applied = SETTINGS.with_record(record)
    assert applied.coefficients.beta_pct_per_hpa == -0.15 and applied.coefficients_version == 3
    batch = to_rows(
        unify_frame(
            [r.model_dump() for r in rates], readings, hours, applied.coefficients, SETTINGS.join
        )
    )
    changed = {row.time for row in batch if row.rate_p_corr_hz is not None}
    assert {row.time for row in revised} == changed and len(changed) > 60
    latest = _final([*first.values(), *revised])
    for row in batch:
        assert latest[row.time].model_copy(update={"revision": 0}) == row
        expected = first[row.time].revision + (1 if row.time in changed else 0)
        assert latest[row.time].revision == expected
    # the same or an older record: nothing; a restarted instance uses the stored record
    assert state.add(record) == [] and state.add(_record(2, -0.1)) == []
    assert StationState(store, SETTINGS).settings == applied
    # a newer record from the folder (MINGO_UNIFY_COEFFICIENTS_DIR) wins over an older one here
    folder = SETTINGS.with_record(_record(4, -0.17))
    assert StationState(store, folder).settings == folder
    # before any data a record is only kept
    empty = StationState(JsonStore(), SETTINGS)
    assert empty.add(record) == [] and empty.settings == applied
