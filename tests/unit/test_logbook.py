"""The mechanical logbook: parsing, bad rows, the entry in force at a time, defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common import rejects as rj
from services.common.logbook import (
    DEFAULT_TRIGGER_PAIRS,
    DEFAULT_Z_MM,
    LogbookEntry,
    entry_at,
    parse_logbook,
    trigger_pairs_at,
    z_positions_at,
)

pytestmark = pytest.mark.unit

HEADER = "station,conf,start,end,P1,P2,P3,P4,C1,C2,C3,C4"
GOOD = f"""{HEADER}
1,1,2023-01-01,2023-06-30,0,150,300,450,12,23,34,13
1,2,2023-07-01,,0,145,290,435,12,23,34,
2,1,2023-03-01 12:00,2023-09-01T00:00:00,0,65,130,195,12,34,,
"""


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


def test_valid_rows() -> None:
    entries, rejects = parse_logbook(GOOD, source="logbook.csv")
    assert rejects == []
    first, second, third = entries
    assert first == LogbookEntry(
        1, 1, utc(2023, 1, 1), utc(2023, 7, 1), (0, 150, 300, 450), (12, 23, 34, 13),
        "logbook.csv", 2,
    )  # fmt: skip
    assert second.end is None and second.z_mm == (0, 145, 290, 435)
    assert second.trigger_pairs == (12, 23, 34)
    assert (third.start, third.end) == (utc(2023, 3, 1, 12), utc(2023, 9, 1))
    assert third.trigger_pairs == (12, 34) and third.line == 4


def test_date_only_end_is_the_last_day_in_force() -> None:
    entries, _ = parse_logbook(GOOD, source="x")
    assert z_positions_at(entries, 1, utc(2023, 6, 30, 23, 59, 59)) == (0, 150, 300, 450)
    assert z_positions_at(entries, 1, utc(2023, 7, 1)) == (0, 145, 290, 435)
    assert z_positions_at(entries, 1, utc(2030, 1, 1)) == (0, 145, 290, 435)  # open-ended


def test_defaults_without_a_matching_row() -> None:
    entries, _ = parse_logbook(GOOD, source="x")
    assert z_positions_at(entries, 1, utc(2022, 12, 31)) == DEFAULT_Z_MM == (0, 150, 300, 450)
    assert z_positions_at(entries, 3, utc(2023, 7, 1)) == DEFAULT_Z_MM
    assert z_positions_at(entries, 2, utc(2023, 9, 1)) == DEFAULT_Z_MM  # datetime end: exclusive
    assert z_positions_at(entries, 2, utc(2023, 8, 31, 23)) == (0, 65, 130, 195)
    assert trigger_pairs_at(entries, 4, utc(2024, 1, 1)) == DEFAULT_TRIGGER_PAIRS
    assert DEFAULT_TRIGGER_PAIRS == (12, 23, 34, 13)
    assert trigger_pairs_at([], 1, utc(2024, 1, 1)) == DEFAULT_TRIGGER_PAIRS
    assert trigger_pairs_at(entries, 2, utc(2023, 5, 1)) == (12, 34)


def test_latest_start_wins_on_overlap() -> None:
    text = f"""{HEADER}
1,1,2023-01-01,,0,150,300,450,12,23,34,13
1,5,2023-03-01,2023-03-31,0,100,200,300,12,,,
"""
    entries, _ = parse_logbook(text, source="x")
    assert entry_at(entries, 1, utc(2023, 3, 15)) == entries[1]
    assert entry_at(entries, 1, utc(2023, 4, 1)) == entries[0]


def test_naive_times_are_refused() -> None:
    entries, _ = parse_logbook(GOOD, source="x")
    with pytest.raises(ValueError, match="aware"):
        z_positions_at(entries, 1, datetime(2023, 7, 1))


@pytest.mark.parametrize(
    ("row", "detail"),
    [
        ("1,1,2023-01-01,,0,150,300,,12,23,34,13", "empty P4"),
        ("1,1,,,0,150,300,450,12,23,34,13", "empty start"),
        ("1,1,2023-01-01,,0,150,abc,450,12,23,34,13", "P3 'abc' is not a number"),
        ("1,1,2023-01-01,,0,150,inf,450,12,23,34,13", "P3 'inf' is not a finite"),
        ("1,1,2023-01-01,,0,300,150,450,12,23,34,13", "not strictly increasing"),
        ("1,1,2023-01-01,,0,150,300,450,11,23,34,13", "C1 '11' is not a pair"),
        ("1,1,2023-01-01,,0,150,300,450,12,25,34,13", "C2 '25' is not a pair"),
        ("1,1,2023-01-01,,0,150,300,450,12,23,x,13", "C3 'x' is not a pair"),
        ("1,1,2023-01-01,,0,150,300,450,,,,", "no trigger pair"),
        ("1,1,2023-02-30,,0,150,300,450,12,23,34,13", "start '2023-02-30' is not a date"),
        ("1,1,2023-01-01,yesterday,0,150,300,450,12,23,34,13", "end 'yesterday' is not"),
        ("1,1,2023-06-01,2023-05-01,0,150,300,450,12,23,34,13", "is not after start"),
        ("one,1,2023-01-01,,0,150,300,450,12,23,34,13", "station 'one' is not"),
        ("1,1.5,2023-01-01,,0,150,300,450,12,23,34,13", "conf '1.5' is not an integer"),
        ("1,1,2023-01-01,,0,150,300,450,12,23,34", "11 cells, expected 12"),
        ("1,1,2023-01-01,,0,150,300,450,12,23,34,13,oops", "13 cells, expected 12"),
    ],
)
def test_bad_rows_are_rejected_and_the_rest_kept(row: str, detail: str) -> None:
    text = f"{HEADER}\n1,1,2022-01-01,2022-12-31,0,150,300,450,12,23,34,13\n{row}\n"
    text += "1,2,2024-01-01,,0,145,290,435,12,23,34,13\n"
    entries, rejects = parse_logbook(text, source="x")
    (reject,) = rejects
    assert (reject.line, reject.reason, reject.raw) == (3, rj.BAD_LOGBOOK_ROW, row)
    assert detail in reject.detail, reject.detail
    assert [e.conf for e in entries] == [1, 2]


def test_header_variants() -> None:
    text = (
        "# mingo01 logbook\n\nNote,C4,C3,C2,C1,P4,P3,P2,P1,End,Start,Conf,Station\r\n"
        'moved,13,34,23,21,435,290,145,0,,2023-07-01,2,"mingo01"\r\n'
        ",,,,,,,,,,,,\r\n"
    )
    entries, rejects = parse_logbook(text, source="x")
    assert rejects == []
    (entry,) = entries
    assert (entry.station, entry.conf, entry.line) == (1, 2, 4)
    assert entry.z_mm == (0, 145, 290, 435) and entry.trigger_pairs == (12, 23, 34, 13)


def test_unusable_header_rejects_the_file() -> None:
    entries, rejects = parse_logbook("station,conf,start,end,P1\n1,1,2023-01-01,,0\n", source="lb")
    assert entries == []
    (reject,) = rejects
    assert (reject.line, reject.reason) == (None, rj.BAD_LOGBOOK_ROW)
    assert "lb: header lacks column(s) P2, P3, P4, C1, C2, C3, C4" in reject.detail
    entries, rejects = parse_logbook("", source="lb")
    assert entries == [] and rejects[0].line is None


@settings(max_examples=40, deadline=None)
@given(
    starts=st.lists(st.integers(0, 2000), min_size=1, max_size=6, unique=True),
    probe=st.integers(-10, 2100),
    open_last=st.booleans(),
)
def test_z_positions_follow_consecutive_periods(
    starts: list[int], probe: int, open_last: bool
) -> None:
    """Back-to-back periods written with inclusive end days select the right row every day."""
    day0 = datetime(2022, 1, 1, tzinfo=UTC)
    starts.sort()
    rows = [HEADER]
    for i, start in enumerate(starts):
        if i + 1 < len(starts):
            end = (day0 + timedelta(days=starts[i + 1] - 1)).date().isoformat()
        else:
            end = "" if open_last else (day0 + timedelta(days=start + 30)).date().isoformat()
        day = (day0 + timedelta(days=start)).date().isoformat()
        rows.append(f"1,{i},{day},{end},0,{100 + i},{200 + i},{300 + i},12,23,,")
    entries, rejects = parse_logbook("\n".join(rows), source="x")
    assert rejects == [] and len(entries) == len(starts)
    when = day0 + timedelta(days=probe, hours=12)
    in_force = [i for i, s in enumerate(starts) if s <= probe]
    last_end = starts[-1] + 31
    if not in_force or (not open_last and probe >= last_end):
        assert z_positions_at(entries, 1, when) == DEFAULT_Z_MM
    else:
        i = in_force[-1]
        assert z_positions_at(entries, 1, when) == (0, 100 + i, 200 + i, 300 + i)
