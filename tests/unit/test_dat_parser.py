"""The ``.dat`` parser: exact round trips, every kind of damage, kernel == reference."""

from __future__ import annotations

import calendar
import random
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from schemas.dat_format import CHANNEL_COLUMNS, N_CHANNELS, channel_index
from services.common import rejects as rj
from services.ingest.dat_parser import DatParseResult, parse_dat, parse_dat_reference

pytestmark = pytest.mark.unit

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- building station-style lines -------------------------------------------------------------


def fmt_value(mantissa: int) -> str:
    """The station's ``%09.4f`` text of ``mantissa / 10000`` (exact, no float rounding)."""
    sign = "-" if mantissa < 0 else ""
    whole, frac = divmod(abs(mantissa), 10000)
    width = 4 - len(sign)
    return f"{sign}{whole:0{width}d}.{frac:04d}"


def test_fmt_value_matches_printf() -> None:
    for m in (0, 1, -1, 1523125, -1523125, 99999999, -9999999, 123456789):
        assert fmt_value(m) == f"{m / 10000:09.4f}"


@dataclass
class Event:
    """One valid event and the text of its line."""

    when: datetime
    trigger: int
    values: list[float]
    text: str

    @property
    def epoch(self) -> int:
        return calendar.timegm(self.when.utctimetuple())


def make_event(
    when: datetime, trigger: int, mantissas: list[int], pad: bool = True, sep: str = " "
) -> Event:
    """A valid line; ``pad`` zero-pads the date fields like the station does."""
    width = 2 if pad else 1
    date = [f"{when.year:04d}"] + [
        f"{v:0{width}d}" for v in (when.month, when.day, when.hour, when.minute, when.second)
    ]
    tokens = [*date, str(trigger), *(fmt_value(m) for m in mantissas)]
    values = [float(fmt_value(m)) for m in mantissas]
    return Event(when, trigger, values, sep.join(tokens))


def random_event(rng: random.Random) -> Event:
    start = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
    end = datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
    when = datetime.fromtimestamp(rng.randint(int(start), int(end)), UTC)
    mantissas = []
    for _ in range(N_CHANNELS):
        kind = rng.random()
        if kind < 0.5:
            mantissas.append(0)
        elif kind < 0.75:
            mantissas.append(-rng.randint(1_000_000, 2_000_000))  # times -200..-100 ns
        else:
            mantissas.append(rng.randint(800_000, 3_000_000))  # charges 80..300 ns
    return make_event(when, rng.choice((1, 2)), mantissas)


def random_file(seed: int, n: int) -> list[Event]:
    rng = random.Random(seed)
    return [random_event(rng) for _ in range(n)]


def join(lines: list[str], newline: str = "\n", final: bool = True) -> bytes:
    return (newline.join(lines) + (newline if final else "")).encode()


# --- hypothesis strategies ---------------------------------------------------------------------

times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59)
).map(lambda d: d.replace(microsecond=0, tzinfo=UTC))
mantissa = st.one_of(
    st.just(0),
    st.integers(-2_000_000, 3_000_000),
    st.integers(-(10**15) + 1, 10**15 - 1),  # up to 11 integer digits
)


@st.composite
def events(draw: st.DrawFn) -> Event:
    return make_event(
        draw(times),
        draw(st.sampled_from((1, 2))),
        draw(st.lists(mantissa, min_size=N_CHANNELS, max_size=N_CHANNELS)),
        pad=draw(st.booleans()),
        sep=draw(st.sampled_from((" ", "  ", "\t", " \t "))),
    )


# --- checks ------------------------------------------------------------------------------------


def assert_same(a: DatParseResult, b: DatParseResult) -> None:
    """Two results are identical, down to the sign of zero."""
    np.testing.assert_array_equal(a.time_s, b.time_s)
    np.testing.assert_array_equal(a.trigger_type, b.trigger_type)
    np.testing.assert_array_equal(a.line_number, b.line_number)
    assert a.channels.shape == b.channels.shape
    assert np.array_equal(a.channels, b.channels)
    assert np.array_equal(np.signbit(a.channels), np.signbit(b.channels))
    assert a.rejects == b.rejects
    assert a.lines_total == b.lines_total
    assert a.comments == b.comments


def assert_events(result: DatParseResult, expected: dict[int, Event]) -> None:
    """The valid events of ``result`` are exactly ``expected`` (line number -> event)."""
    assert result.line_number.tolist() == sorted(expected)
    for row, line in enumerate(result.line_number.tolist()):
        event = expected[line]
        assert result.time_s[row] == event.epoch
        assert result.trigger_type[row] == event.trigger
        assert result.channels[row].tolist() == event.values


def check_dtypes(result: DatParseResult) -> None:
    assert result.time_s.dtype == np.int64
    assert result.trigger_type.dtype == np.int8
    assert result.line_number.dtype == np.int32
    assert result.channels.dtype == np.float64
    assert result.channels.shape == (result.lines_valid, N_CHANNELS)


# --- round trips ------------------------------------------------------------------------------


@FAST
@given(st.lists(events(), min_size=1, max_size=8), st.sampled_from(("\n", "\r\n")), st.booleans())
def test_valid_lines_round_trip_exactly(evs: list[Event], newline: str, final: bool) -> None:
    data = join(["# param_hash=abc", *(e.text for e in evs)], newline, final)
    result = parse_dat(data)
    check_dtypes(result)
    assert result.rejects == ()
    assert result.lines_total == len(evs) == result.lines_valid
    assert result.valid_fraction == 100.0
    assert result.comments == ("# param_hash=abc",)
    assert_events(result, {i + 2: e for i, e in enumerate(evs)})
    assert_same(result, parse_dat_reference(data))


def test_channel_order_follows_schema() -> None:
    mantissas = list(range(N_CHANNELS))  # value i / 10000 in field 8 + i
    event = make_event(datetime(2024, 3, 1, tzinfo=UTC), 1, mantissas)
    result = parse_dat(event.text.encode())
    for name, value in zip(CHANNEL_COLUMNS, result.channels[0], strict=True):
        plane, quantity, strip = int(name[1]), name[3:6], int(name[-1])
        assert value == channel_index(plane, quantity, strip) / 10000
    assert CHANNEL_COLUMNS[0] == "P4_T_F_1" and CHANNEL_COLUMNS[-1] == "P1_Q_B_4"


def test_times_are_utc_epoch_seconds() -> None:
    cases = [
        datetime(2000, 1, 1, tzinfo=UTC),
        datetime(2000, 2, 29, 23, 59, 59, tzinfo=UTC),  # 2000 is a leap year
        datetime(2024, 2, 29, 12, tzinfo=UTC),
        datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC),
    ]
    data = join([make_event(d, 1, [0] * 64).text for d in cases])
    result = parse_dat(data)
    assert result.time_s.tolist() == [int(d.timestamp()) for d in cases]


def test_negative_zero_and_widest_values() -> None:
    tokens = ["-000.0000", "99999999999.9999", "-99999999999.9999", "0.0000", "-0.0001"]
    line = "2024 03 01 00 00 00 2 " + " ".join(tokens + ["0000.0000"] * 59)
    result = parse_dat(line.encode())
    assert result.channels[0, :5].tolist() == [float(t) for t in tokens]
    assert np.signbit(result.channels[0, 0])
    too_wide = line.replace("99999999999.9999", "999999999999.9999", 1)
    assert parse_dat(too_wide.encode()).rejects[0].reason == rj.TRUNCATED_LINE  # no newline
    assert parse_dat((too_wide + "\n").encode()).rejects[0].reason == rj.MALFORMED_NUMBER


def test_valid_last_line_without_newline_is_kept() -> None:
    evs = random_file(1, 3)
    result = parse_dat(join([e.text for e in evs], final=False))
    assert result.rejects == () and result.lines_valid == 3


def test_blank_and_comment_lines_count_in_line_numbers() -> None:
    evs = random_file(2, 2)
    data = join(["# param_hash=1", "", "  \t", evs[0].text, "   # indented comment", evs[1].text])
    result = parse_dat(data)
    assert result.line_number.tolist() == [4, 6]
    assert result.comments == ("# param_hash=1", "   # indented comment")
    assert result.lines_total == 2


# --- damage ------------------------------------------------------------------------------------

MALFORMED = [
    "-120.144.0",
    "12.34",
    "abc",
    "1e5",
    "--1.0000",
    "-.5000",
    "0000,0000",
    "+001.0000",
    "0001.",
    ".0000",
    "1.000a",
    "0000.000",
    "-",
    "0x1F.0000",
]
BAD_DATES = [  # (fields 1-6, field reported)
    ("2023 02 29 00 00 00", 3),  # not a leap year
    ("2100 02 29 00 00 00", 1),  # out of range anyway
    ("2024 02 30 12 00 00", 3),
    ("2024 04 31 12 00 00", 3),
    ("2024 13 01 00 00 00", 2),
    ("2024 00 01 00 00 00", 2),
    ("2024 01 00 00 00 00", 3),
    ("2024 01 32 00 00 00", 3),
    ("2024 01 01 24 00 00", 4),
    ("2024 01 01 00 60 00", 5),
    ("2024 01 01 00 00 60", 6),
    ("1999 12 31 23 59 59", 1),
    ("24 01 01 00 00 00", 1),
    ("2024a 01 01 00 00 00", 1),
    ("2024 001 01 00 00 00", 2),
    ("2024 01 01 00 00 -1", 6),
    ("2024 1.0 01 00 00 00", 2),
]
BAD_TRIGGERS = ["0", "3", "01", "a", "12", "-1", "1.0"]


def damage(kind: str, event: Event, rng: random.Random) -> tuple[str, str]:
    """A damaged version of a valid line and the reason expected for it."""
    tokens = event.text.split(" ")
    if kind == "fewer_fields":
        del tokens[rng.randrange(7, 71)]
        return " ".join(tokens), rj.FIELD_COUNT
    if kind == "more_fields":
        tokens.insert(rng.randrange(7, 72), "0000.0000")
        return " ".join(tokens), rj.FIELD_COUNT
    if kind == "glued_decimals":  # 0000.00000012.5000: a separator lost
        i = rng.randrange(7, 70)
        tokens[i : i + 2] = [tokens[i] + tokens[i + 1]]
        return " ".join(tokens), rj.GLUED_TOKENS
    if kind == "glued_sign":  # 0012.5000-0003.1000
        i = rng.randrange(7, 70)
        tokens[i : i + 2] = [fmt_value(125000) + fmt_value(-31000)]
        return " ".join(tokens), rj.GLUED_TOKENS
    if kind == "malformed":
        tokens[rng.randrange(7, 71)] = rng.choice(MALFORMED)
        return " ".join(tokens), rj.MALFORMED_NUMBER
    if kind == "bad_date":
        date, _ = rng.choice(BAD_DATES)
        return " ".join([date, *tokens[6:]]), rj.BAD_DATE
    if kind == "bad_trigger":
        tokens[6] = rng.choice(BAD_TRIGGERS)
        return " ".join(tokens), rj.BAD_TRIGGER_TYPE
    if kind == "nul":
        text = event.text
        at = rng.randrange(0, len(text) + 1)
        return text[:at] + "\x00" + text[at:], rj.BINARY_CONTENT
    if kind == "control":
        text = event.text
        at = rng.randrange(1, len(text))
        return text[:at] + rng.choice("\x01\x1b\x7f\r\x0b") + text[at:], rj.BINARY_CONTENT
    raise AssertionError(kind)


DAMAGES = [
    "fewer_fields",
    "more_fields",
    "glued_decimals",
    "glued_sign",
    "malformed",
    "bad_date",
    "bad_trigger",
    "nul",
    "control",
]


@pytest.mark.parametrize("kind", DAMAGES)
@pytest.mark.parametrize("seed", range(4))
def test_each_damage_rejects_exactly_the_damaged_lines(kind: str, seed: int) -> None:
    rng = random.Random(f"{kind}-{seed}")  # str seeds are stable across runs
    evs = random_file(seed, 40)
    lines = ["# param_hash=x", *(e.text for e in evs)]
    damaged = set(rng.sample(range(1, len(lines)), 7))
    expected_reason = {}
    for i in damaged:
        lines[i], expected_reason[i + 1] = damage(kind, evs[i - 1], rng)
    newline = rng.choice(("\n", "\r\n"))
    data = join(lines, newline)
    result = parse_dat(data)
    check_dtypes(result)
    got = {r.line: r for r in result.rejects if r.line is not None}
    assert len(got) == len(result.rejects) and set(got) == set(expected_reason)
    for line, reject in got.items():
        assert reject.reason == expected_reason[line], reject
        assert reject.raw == lines[line - 1]
        assert reject.detail
    assert_events(result, {i + 1: evs[i - 1] for i in range(1, len(lines)) if i not in damaged})
    assert result.lines_total == 40
    assert result.valid_fraction == pytest.approx(100 * 33 / 40)
    assert_same(result, parse_dat_reference(data))


@FAST
@given(st.lists(events(), min_size=2, max_size=6), st.data())
def test_damage_property(evs: list[Event], data: st.DataObject) -> None:
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    lines = [e.text.replace("\t", " ") for e in evs]
    lines = [" ".join(t.split()) for t in lines]  # damage() works on single-space lines
    evs = [Event(e.when, e.trigger, e.values, t) for e, t in zip(evs, lines, strict=True)]
    kinds = data.draw(st.lists(st.sampled_from(DAMAGES), min_size=len(evs), max_size=len(evs)))
    hit = data.draw(st.lists(st.booleans(), min_size=len(evs), max_size=len(evs)))
    expected = {}
    for i, (kind, damaged) in enumerate(zip(kinds, hit, strict=True)):
        if damaged:
            lines[i], expected[i + 1] = damage(kind, evs[i], rng)
    blob = join(lines)
    result = parse_dat(blob)
    binary = sum(reason == rj.BINARY_CONTENT for reason in expected.values())
    if len(expected) == len(evs) and 2 * binary > len(evs):
        # no valid line and mostly binary: one whole-file reject replaces the line rejects
        assert [(r.line, r.reason) for r in result.rejects] == [(None, rj.BINARY_CONTENT)]
    else:
        assert {r.line: r.reason for r in result.rejects} == expected
    assert_events(result, {i + 1: e for i, e in enumerate(evs) if i + 1 not in expected})
    assert_same(result, parse_dat_reference(blob))


def test_lost_newline_glues_two_lines() -> None:
    evs = random_file(3, 5)
    lines = [e.text for e in evs]
    merged = lines[1] + lines[2]  # the newline between lines 2 and 3 was lost
    data = join([lines[0], merged, lines[3], lines[4]])
    result = parse_dat(data)
    (reject,) = result.rejects
    assert (reject.line, reject.reason) == (2, rj.GLUED_TOKENS)
    assert "field 71" in reject.detail and "141 fields" in reject.detail
    assert reject.raw == merged
    assert_events(result, {1: evs[0], 3: evs[3], 4: evs[4]})


@pytest.mark.parametrize("cut", [1, 5, 30, 300, -20, -5, -4, -1])
def test_truncated_last_line(cut: int) -> None:
    evs = random_file(4, 3)
    lines = [e.text for e in evs]
    lines[-1] = lines[-1][:cut]
    result = parse_dat(join(lines, final=False))
    (reject,) = result.rejects
    assert (reject.line, reject.reason, reject.raw) == (3, rj.TRUNCATED_LINE, lines[-1])
    assert reject.detail.startswith("last line has no newline and is invalid: ")
    assert_events(result, {1: evs[0], 2: evs[1]})
    # the same text with its newline is an ordinary bad line
    assert parse_dat(join(lines)).rejects[0].reason != rj.TRUNCATED_LINE


def test_details_name_the_problem() -> None:
    base = random_file(5, 1)[0].text
    tokens = base.split(" ")

    def detail(text: str) -> str:
        # after a valid line, so that a binary line is not taken for a binary file
        return parse_dat((base + "\n" + text + "\n").encode()).rejects[0].detail

    assert detail(" ".join(tokens[:-1])) == "70 fields, expected 71"
    bad = [*tokens]
    bad[22] = "-120.144.0"
    assert detail(" ".join(bad)).startswith("field 23 '-120.144.0' is not a number")
    assert detail(" ".join(["2024", "02", "30", *tokens[3:]])) == "2024-02-30 is not a date"
    assert detail(" ".join(["2024", "13", *tokens[2:]])) == "month 13 is outside 1-12"
    assert detail(" ".join([*tokens[:6], "3", *tokens[7:]])) == (
        "field 7 '3' is not a trigger type (1 or 2)"
    )
    assert detail(base[:10] + "\x00" + base[10:]) == "non-text byte 0x00 at column 11"
    glued = [*tokens[:30], tokens[30] + tokens[31], *tokens[32:]]
    assert detail(" ".join(glued)).startswith(f"field 31 '{tokens[30]}{tokens[31]}' looks like")


def test_empty_and_comment_only_files() -> None:
    for data in (b"", b"\n\n", b"# param_hash=1\n", b"  \r\n"):
        result = parse_dat(data)
        assert result.lines_total == 0 and result.lines_valid == 0
        (reject,) = result.rejects
        assert (reject.line, reject.reason) == (None, rj.EMPTY_FILE)
        assert result.valid_fraction == 0.0
        assert_same(result, parse_dat_reference(data))


def test_binary_file_gives_one_whole_file_reject() -> None:
    blob = zlib.compress(random.Random(6).randbytes(50_000))  # looks like an archive
    result = parse_dat(blob)
    assert result.lines_valid == 0 and result.lines_total > 10
    (reject,) = result.rejects
    assert (reject.line, reject.reason) == (None, rj.BINARY_CONTENT)
    assert_same(result, parse_dat_reference(blob))


def test_binary_tail_keeps_the_valid_lines() -> None:
    evs = random_file(7, 5)
    data = join([e.text for e in evs]) + b"\x00" * 10_000  # a crash left a block of zeros
    result = parse_dat(data)
    assert_events(result, {i + 1: e for i, e in enumerate(evs)})
    (reject,) = result.rejects
    assert (reject.line, reject.reason) == (6, rj.TRUNCATED_LINE)
    assert "non-text byte 0x00" in reject.detail
    assert len(reject.raw.encode()) == rj.MAX_RAW_BYTES and "cut to 2048 of 10000" in reject.detail


def test_input_types() -> None:
    data = join([e.text for e in random_file(8, 3)])
    expected = parse_dat(data)
    for variant in (
        bytearray(data),
        memoryview(data),
        np.frombuffer(data, np.uint8),
        np.frombuffer(data, np.uint8).copy(),
        np.frombuffer(b"x" + data, np.uint8)[1:],
    ):
        assert_same(parse_dat(variant), expected)
    with pytest.raises(TypeError, match="encode"):
        parse_dat(data.decode())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_dat(np.frombuffer(data, np.int8))
    with pytest.raises(TypeError):
        parse_dat(np.frombuffer(data, np.uint8).reshape(-1, 1))
    with pytest.raises(TypeError):
        parse_dat([1, 2, 3])  # type: ignore[arg-type]
    strided = np.frombuffer(data + data, np.uint8)[::2]
    assert_same(parse_dat(strided), parse_dat_reference(strided.tobytes()))


# --- kernel == reference on anything -----------------------------------------------------------

ALPHABET = list("0123456789.-") * 6 + [" ", " ", "\t", "\n", "\n", "\r", "#", "\x00", "a", "é"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(ALPHABET), max_size=300).map("".join))
def test_kernel_equals_reference_on_soup(text: str) -> None:
    data = text.encode()
    assert_same(parse_dat(data), parse_dat_reference(data))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_kernel_equals_reference_on_bytes(data: bytes) -> None:
    assert_same(parse_dat(data), parse_dat_reference(data))


@FAST
@given(st.lists(events(), min_size=1, max_size=4), st.data())
def test_kernel_equals_reference_on_mutated_lines(evs: list[Event], data: st.DataObject) -> None:
    """Random edits of valid lines reach the corners of the grammar (kernel == reference)."""
    text = "\n".join(e.text for e in evs) + "\n"
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(("insert", "delete", "replace")))
        char = data.draw(st.sampled_from([*"0123456789.- \t\n\r#", "\x00", "x"]))
        if op == "insert":
            text = text[:at] + char + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + 1 :]
        else:
            text = text[:at] + char + text[at + 1 :]
    blob = text.encode()
    assume(blob)
    assert_same(parse_dat(blob), parse_dat_reference(blob))


def test_large_seeded_file_matches_reference() -> None:
    rng = random.Random(9)
    evs = random_file(9, 3000)
    lines = ["# param_hash=big", *(e.text for e in evs)]
    for i in rng.sample(range(1, len(lines)), 300):
        lines[i], _ = damage(rng.choice(DAMAGES), evs[i - 1], rng)
    data = join(lines)
    result = parse_dat(data)
    assert result.lines_total == 3000 and result.lines_valid == 2700
    assert_same(result, parse_dat_reference(data))
