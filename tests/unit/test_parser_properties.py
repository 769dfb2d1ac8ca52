"""Property-based tests of every reader of outside input: whatever arrives, only rejects or the
documented error come out, never an unexpected exception.

Covers the file-name parsers and checks, the log parser, the logbook, daily archives, the network
file, ERA5 decoding of damaged files, and the line-protocol encoder (a round trip through a parser
written from the line-protocol specification). The ``.dat`` parser's kernel/reference agreement
on arbitrary bytes lives in test_dat_parser.py; its bookkeeping invariants are here.
"""

from __future__ import annotations

import io
import math
import tarfile
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.dat_format import dat_filename, parse_dat_filename
from schemas.station_logs import LOG_TYPES, log_type_of_file
from services.common import rejects as rj
from services.common.logbook import LOGBOOK_COLUMNS, parse_logbook
from services.common.stations import NetworkConfigError, load_network
from services.ingest.archives import ArchiveError, read_dat_archive
from services.ingest.dat_parser import parse_dat
from services.ingest.log_parser import parse_log
from services.ingest.names import check_dat_name
from services.reanalysis.decode import Era5FileError
from services.reanalysis.service import station_long_table
from services.sink.lineprotocol import FieldKind, encode_point
from tests.data.bad.make_corpus import FILES, dat_text
from tests.unit.test_bad_corpus import MADRID

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, tzinfo=UTC)
NAME_ALPHABET = "mi0nI123456789.datrgz_-Z "


# --- file names -------------------------------------------------------------------------------


@settings(deadline=None)
@given(st.text(alphabet=NAME_ALPHABET, max_size=30) | st.text(max_size=30))
def test_dat_names_parse_or_raise_value_error(name: str) -> None:
    try:
        station, start = parse_dat_filename(name)
    except ValueError as exc:
        assert repr(name) in str(exc)  # the message names the file
        return
    assert 0 <= station <= 9 and start.tzinfo is UTC
    if name.startswith("mi0") and name.endswith(".dat"):
        assert dat_filename(station, start) == name


@settings(deadline=None)
@given(
    st.integers(0, 9),
    st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31, 23, 59, 59)),
)
def test_dat_names_round_trip(station: int, start: datetime) -> None:
    start = start.replace(microsecond=0, tzinfo=UTC)
    assert parse_dat_filename(dat_filename(station, start)) == (station, start)


@settings(deadline=None)
@given(
    st.text(alphabet=NAME_ALPHABET, max_size=25) | st.text(max_size=25),
    st.integers(0, 9),
    st.dictionaries(
        st.datetimes(datetime(2000, 1, 1), datetime(2099, 1, 1), timezones=st.just(UTC)),
        st.text(max_size=20),
        max_size=3,
    ),
)
def test_name_checks_give_a_known_reject_or_none(
    name: str, station: int, known: dict[datetime, str]
) -> None:
    checked = check_dat_name(name, station, NOW, known)
    if checked.reject is None:
        assert checked.start is not None and checked.start <= NOW + timedelta(hours=1)
    else:
        assert checked.reject.reason in rj.REASONS and checked.reject.line is None


@settings(deadline=None)
@given(st.text(max_size=40))
def test_log_file_names_never_raise(name: str) -> None:
    log_type = log_type_of_file(name)
    assert log_type is None or (name.startswith(log_type.prefix) and name.endswith(".log"))


# --- line parsers -----------------------------------------------------------------------------

LOG_LINE = st.one_of(
    st.binary(max_size=120),
    st.builds(
        lambda stamp, sep, values: f"{stamp}{sep}{' '.join(values)}".encode(),
        st.sampled_from(["2024-03-01T00:00:00", "2024-03-01 23:59:59", "1970-01-01T00:00:00",
                         "2024-02-30T00:00:00", "2024-3-1T0:0:0", ""]),
        st.sampled_from([";", " ", "; ", "x", ""]),
        st.lists(st.sampled_from(["1", "-2.5", "nan", "NaN", "1e999", "3.", ".5", "1.2.3", "kV",
                                  "\x00", "\t", "18.5C"]), max_size=25),
    ),
)  # fmt: skip


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(LOG_LINE, max_size=8),
    st.sampled_from(LOG_TYPES),
    st.integers(1, 10_000),
    st.sampled_from([b"\n", b"\r\n"]),
    st.booleans(),
)
def test_log_parser_accounts_for_every_line(
    lines: list[bytes], log_type: object, first_line: int, newline: bytes, closed: bool
) -> None:
    data = newline.join(lines) + (newline if closed else b"")
    result = parse_log(data, log_type, first_line=first_line)  # type: ignore[arg-type]
    assert len(result.rows) + len(result.rejects) == result.lines_total
    assert all(r.reason in rj.REASONS and r.line is not None for r in result.rejects)
    last = first_line + data[: result.consumed_bytes].count(b"\n")
    assert all(first_line <= r.line < last for r in result.rejects)  # type: ignore[operator]
    assert all(first_line <= row.line < last for row in result.rows)
    assert all(2000 <= row.time.year <= 2099 for row in result.rows)
    assert all(v is None or math.isfinite(v) for row in result.rows for v in row.values.values())


@settings(deadline=None)
@given(st.binary(max_size=2000))
def test_dat_parser_accounts_for_every_line(data: bytes) -> None:
    result = parse_dat(data)
    line_rejects = [r for r in result.rejects if r.line is not None]
    assert all(r.reason in rj.REASONS for r in result.rejects)
    if result.lines_valid:
        assert result.lines_valid + len(line_rejects) == result.lines_total
    assert all(len(r.raw.encode()) <= 3 * rj.MAX_RAW_BYTES for r in result.rejects)


CELL = st.sampled_from(["1", "mingo01", "2", "x", "", "2024-03-01", "2024-03-01 12:00",
                        "2024-13-01", "2024-03-01T00:00+02:00", "0", "150", "300", "450", "-1",
                        "inf", "nan", "12", "34", "11", "56", '"', "#", "1e3"])  # fmt: skip


@settings(deadline=None)
@given(
    st.permutations([c.lower() if i % 2 else c for i, c in enumerate(LOGBOOK_COLUMNS)]),
    st.lists(st.lists(CELL, min_size=0, max_size=14), max_size=6),
)
def test_logbook_rows_are_entries_or_rejects(header: list[str], rows: list[list[str]]) -> None:
    text = "\n".join([",".join(header), *(",".join(r) for r in rows)]) + "\n"
    entries, rejects = parse_logbook(text, source="logbook.csv")
    assert all(r.reason == rj.BAD_LOGBOOK_ROW for r in rejects)
    assert len(entries) + len(rejects) <= len(rows)
    for entry in entries:
        assert list(entry.z_mm) == sorted(set(entry.z_mm)) and entry.trigger_pairs
        assert entry.end is None or entry.end > entry.start


@settings(deadline=None)
@given(st.text(max_size=300))
def test_logbook_never_raises_on_any_text(text: str) -> None:
    entries, rejects = parse_logbook(text, source="logbook.csv")
    assert all(r.reason == rj.BAD_LOGBOOK_ROW for r in rejects)
    assert all(e.source == "logbook.csv" and e.line >= 2 for e in entries)


def test_logbook_cell_beyond_the_csv_field_limit_is_a_reject() -> None:
    good = "1,1,2024-01-01,,0,150,300,450,12,,,"
    text = f"{','.join(LOGBOOK_COLUMNS)}\n{good}\n1,2,{'9' * 200_000}\n{good}\n"
    entries, rejects = parse_logbook(text, source="logbook.csv")
    assert [e.line for e in entries] == [2, 4]
    assert [(r.line, r.reason) for r in rejects] == [(3, rj.BAD_LOGBOOK_ROW)]
    assert "field larger than field limit" in rejects[0].detail


# --- archives and network files ----------------------------------------------------------------


def _archive() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        data = dat_text(datetime(2024, 3, 1, tzinfo=UTC), 3).encode()
        info = tarfile.TarInfo("mi0124061000000.dat")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


ARCHIVE = _archive()


@settings(deadline=None)
@given(st.binary(max_size=300) | st.integers(0, len(ARCHIVE)).map(lambda n: ARCHIVE[:n]))
def test_damaged_archives_raise_only_archive_error(data: bytes) -> None:
    try:
        members = read_dat_archive(data)
    except ArchiveError as exc:
        assert str(exc)
        return
    assert all(name.endswith(".dat") for name, _ in members)


@settings(deadline=None)
@given(st.integers(0, len(ARCHIVE) - 1), st.integers(1, 255))
def test_flipped_byte_in_an_archive_raises_only_archive_error(position: int, xor: int) -> None:
    data = bytearray(ARCHIVE)
    data[position] ^= xor
    try:
        members = read_dat_archive(bytes(data))
    except ArchiveError as exc:
        assert "cannot unpack" in str(exc) or "unexpected member" in str(exc)
        return
    assert all(name.endswith(".dat") for name, _ in members)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200) | st.sampled_from(
    [(FILES / "network" / n).read_text(errors="replace") for n in ("typo.yaml", "latitude.yaml")]
    + ["stations:\n  - {id: 1, name: m, source: {kind: local, root: /x}}\n"]
))  # fmt: skip
def test_network_files_load_or_raise_the_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stations.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            network = load_network(path)
        except NetworkConfigError as exc:
            assert str(path) in str(exc)
            return
        assert len({s.id for s in network.stations}) == len(network.stations)


# --- ERA5 files ---------------------------------------------------------------------------------

GOOD_ERA5 = (FILES / "era5" / "mingo01" / "era5_good.nc").read_bytes()
MAGICS = [b"GRIB", b"CDF\x01", b"CDF\x02", b"\x89HDF", b"PK\x03\x04", b""]


@settings(max_examples=40, deadline=None)
@given(
    st.one_of(
        st.tuples(st.sampled_from(MAGICS), st.binary(max_size=200)).map(lambda t: t[0] + t[1]),
        st.integers(0, len(GOOD_ERA5)).map(lambda n: GOOD_ERA5[:n]),
        st.tuples(st.integers(0, len(GOOD_ERA5) - 1), st.integers(1, 255)).map(
            lambda t: GOOD_ERA5[: t[0]] + bytes([GOOD_ERA5[t[0]] ^ t[1]]) + GOOD_ERA5[t[0] + 1 :]
        ),
    )
)
def test_damaged_era5_files_give_only_the_clear_errors(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "era5.nc"
        path.write_bytes(data)
        try:
            table = station_long_table(path, MADRID)
        except (Era5FileError, ValueError) as exc:
            assert "era5.nc" in str(exc)  # the message names the file
            return
        assert table["value"].notna().any()


# --- line protocol ----------------------------------------------------------------------------

_KEY_ESCAPES = {",", "=", " ", "\\"}


def _unescape(text: str, escapable: set[str]) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in escapable:
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _split(text: str, sep: str, *, quotes: bool = False) -> list[str]:
    """Split at unescaped ``sep`` (outside double quotes when ``quotes``)."""
    parts, start, i, quoted = [], 0, 0, False
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if quotes and char == '"':
            quoted = not quoted
        elif char == sep and not quoted:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    return [*parts, text[start:]]


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, object], int]:
    """A line of line protocol, read as the InfluxDB specification says."""
    head, fields_text, timestamp = _split(line, " ", quotes=True)
    measurement, *tag_texts = _split(head, ",")
    tags = dict(tuple(_unescape(p, _KEY_ESCAPES) for p in _split(t, "=")) for t in tag_texts)
    fields: dict[str, object] = {}
    for item in _split(fields_text, ",", quotes=True):
        key, value = _split(item, "=", quotes=True)
        if value.startswith('"'):
            parsed: object = _unescape(value[1:-1], {'"', "\\"})
        elif value.endswith("i"):
            parsed = int(value[:-1])
        elif value in ("true", "false"):
            parsed = value == "true"
        else:
            parsed = float(value)
        fields[_unescape(key, _KEY_ESCAPES)] = parsed
    return _unescape(measurement, _KEY_ESCAPES), tags, fields, int(timestamp)


KINDS = {
    "station": FieldKind.TAG,
    "source": FieldKind.TAG,
    "message": FieldKind.STRING,
    "rate": FieldKind.FLOAT,
    "count": FieldKind.INT,
    "ok": FieldKind.BOOL,
    "flags": FieldKind.STRING_LIST,
}


@settings(deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "station": st.none() | st.text(max_size=12),
            "source": st.none() | st.text(max_size=12),
            "message": st.none() | st.text(max_size=30),
            "rate": st.none() | st.floats(allow_nan=True, allow_infinity=True),
            "count": st.none() | st.integers(-(2**63), 2**63 - 1),
            "ok": st.none() | st.booleans(),
            "flags": st.none() | st.lists(st.text(alphabet="abc_", min_size=1), max_size=3),
        }
    ),
    st.integers(0, 2**33),
)
def test_line_protocol_round_trips(values: dict[str, object], timestamp_s: int) -> None:
    line = encode_point("unified", values, KINDS, timestamp_s=timestamp_s)
    expected_fields: dict[str, object] = {}
    for name in ("message", "rate", "count", "ok", "flags"):
        value = values[name]
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        if name == "flags":
            value = ";".join(value)  # type: ignore[arg-type]
        expected_fields[name] = value
    if not expected_fields:
        assert line is None
        return
    assert line is not None and "\n" not in line  # one point is one line, whatever the text

    def newline_free(text: str) -> str:  # a newline cannot travel; it is written as \n
        return text.replace("\n", "\\n")

    measurement, tags, fields, timestamp = parse_line(line)
    assert (measurement, timestamp) == ("unified", timestamp_s)
    assert tags == {
        k: newline_free(v)
        for k in ("station", "source")
        if (v := values[k]) not in (None, "")  # type: ignore[arg-type]
    }
    assert fields == {
        k: newline_free(v) if isinstance(v, str) else v for k, v in expected_fields.items()
    }
