"""Contracts: generated files in sync, round trips, strictness."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.dat_format import CHANNEL_COLUMNS, channel_index, dat_filename, parse_dat_filename
from schemas.generate import JSON_DIR, render
from schemas.models import LogReading, MinuteRates, RawEventChunkEnvelope, RejectRecord
from schemas.topics import STATION_PARTITIONS, TOPICS

pytestmark = pytest.mark.unit


def test_generated_files_match_models() -> None:
    expected = render()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in JSON_DIR.iterdir()}
    assert on_disk == expected, "schemas/json drifted: run `python -m schemas.generate`"


def test_every_field_has_a_description() -> None:
    for spec in TOPICS:
        for name, field in spec.model.model_fields.items():
            assert field.description, f"{spec.model.__name__}.{name} has no description"


def test_joined_topics_are_copartitioned() -> None:
    keyed = [t for t in TOPICS if t.key == "station id" and t.cleanup_policy == "delete"]
    assert {t.partitions for t in keyed} == {STATION_PARTITIONS}


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        RejectRecord.model_validate(
            {"station": 1, "kind": "dat", "source_file": "f", "reason": "R", "detail": "d",
             "raw": "", "reject_id": "1/f/file", "surprise": 1}
        )  # fmt: skip


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        LogReading(
            station=1, source="hv", time=datetime(2024, 3, 1), values={}, units={},
            source_file="hv0_2024-03-01.log", line=1, reading_id="x",
        )  # fmt: skip


readings = st.builds(
    LogReading,
    station=st.integers(0, 9),
    source=st.sampled_from(["sensors_ext", "hv", "gas_flow"]),
    time=st.datetimes(timezones=st.just(UTC)),
    values=st.dictionaries(
        st.text(min_size=1, max_size=12),
        st.none() | st.floats(allow_nan=False, allow_infinity=False),
    ),
    units=st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=4)),
    out_of_range=st.lists(st.text(max_size=8), max_size=3),
    source_file=st.text(min_size=1, max_size=30),
    line=st.integers(1, 10**7),
    reading_id=st.text(min_size=1, max_size=40),
)


@given(readings)
def test_log_reading_round_trip(reading: LogReading) -> None:
    assert LogReading.model_validate_json(reading.to_json_bytes()) == reading


envelopes = st.builds(
    RawEventChunkEnvelope,
    station=st.integers(0, 9),
    source_file=st.text(min_size=1, max_size=30),
    archive=st.none() | st.text(min_size=1, max_size=30),
    chunk_id=st.text(min_size=1, max_size=50),
    chunk_index=st.integers(0, 1000),
    chunk_count=st.integers(1, 1000),
    trigger_type=st.sampled_from([1, 2]),
    event_count=st.integers(1, 10**6),
    first_time_s=st.integers(0, 2**33),
    last_time_s=st.integers(0, 2**33),
    file_start_s=st.integers(0, 2**33),
    file_end_s=st.integers(0, 2**33),
)


@given(envelopes)
def test_envelope_round_trip(envelope: RawEventChunkEnvelope) -> None:
    assert RawEventChunkEnvelope.model_validate_json(envelope.to_json_bytes()) == envelope


def test_minute_rates_validates_against_generated_json_schema() -> None:
    schema = json.loads((JSON_DIR / "mingo.rates.minute.v1.schema.json").read_text())
    assert "rate_mid_7_err_hz" in schema["properties"]
    assert "count_1234" in schema["required"]
    assert set(schema["properties"]) == set(MinuteRates.model_fields)


def test_channel_order_is_plane_four_first() -> None:
    assert CHANNEL_COLUMNS[0] == "P4_T_F_1"
    assert CHANNEL_COLUMNS[16] == "P3_T_F_1"
    assert CHANNEL_COLUMNS[-1] == "P1_Q_B_4"
    assert channel_index(2, "Q_F", 3) == 2 * 16 + 2 * 4 + 2
    assert CHANNEL_COLUMNS[channel_index(2, "Q_F", 3)] == "P2_Q_F_3"


@given(st.integers(0, 9), st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)))
def test_dat_filename_round_trip(station: int, start: datetime) -> None:
    start = start.replace(microsecond=0, tzinfo=UTC)
    assert parse_dat_filename(dat_filename(station, start)) == (station, start)


@pytest.mark.parametrize(
    "name", ["mi0124366250000.dat", "mi0123400120000.dat", "mi01240011200.dat", "x.dat"]
)
def test_bad_dat_filenames_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=name.split(".")[0]):
        parse_dat_filename(name)


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_non_finite_values_are_refused(bad: float) -> None:
    # JSON has no inf/nan: a contract that accepted them could not round-trip (missing = null).
    with pytest.raises(ValidationError, match="finite"):
        LogReading(
            station=1, source="hv", time=datetime(2024, 3, 1, tzinfo=UTC), values={"hv_pos": bad},
            units={}, source_file="hv0_2024-03-01.log", line=1, reading_id="x",
        )  # fmt: skip
