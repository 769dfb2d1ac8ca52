"""The bad-input corpus (tests/data/bad) through the code that reads each kind of file.

Every corpus file must give exactly the rejects its manifest lists (file, line, reason, a piece of
the detail), the valid records beside the damage must still come out, and nothing may raise but
the one documented error of a bad network file. The same corpus goes through the ingest service
on Kafka in tests/integration/test_bad_input.py.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.models import RejectRecord
from schemas.station_logs import log_type_of_file
from services.common import rejects as rj
from services.common.logbook import parse_logbook
from services.common.rejects import LineReject, make_reject, reject_records
from services.common.stations import NetworkConfigError, Station, load_network
from services.ingest.archives import ArchiveError, read_dat_archive
from services.ingest.dat_parser import parse_dat_file
from services.ingest.log_parser import parse_log
from services.ingest.names import check_dat_name
from services.unify.cli import _Rejects, station_hours, station_readings
from tests.data.bad.make_corpus import FILES, MANIFEST, STATION, Expect, build, read_manifest

pytestmark = pytest.mark.unit

EXPECTED = read_manifest()
#: Station 1 as the shipped network file has it (coordinates for the ERA5 files).
MADRID = load_network().station(STATION)


def _key(e: Expect) -> tuple[str, str, int | None]:
    return (e.path, e.reason, e.line)


def _found(path: str, kind: str, rejects: list[LineReject]) -> list[Expect]:
    return [Expect(path, kind, r.reason, r.line, r.detail) for r in rejects]


def _dat(
    path: str, data: bytes, known: dict[datetime, str], now: datetime
) -> tuple[list[Expect], int]:
    """As ingest's ``_dat_unit``: name checks, then the parser and the file-span rule unless the
    name stops the file."""
    name = posixpath.basename(path.split("!")[-1])
    checked = check_dat_name(name, STATION, now, known)
    found = [checked.reject] if checked.reject else []
    if checked.reject is not None and checked.reject.reason != rj.BAD_FILE_NAME:
        return _found(path, "dat", found), 0
    start_s = int(checked.start.timestamp()) if checked.start is not None else None
    result = parse_dat_file(data, start_s)
    if result.lines_valid and checked.start is not None:
        known.setdefault(checked.start, name)
    return _found(path, "dat", [*found, *result.rejects]), result.lines_valid


def _run_dat_directory() -> tuple[list[Expect], dict[str, int]]:
    """Plain files and archives of mingo01/dat in ingest's order (sorted by name)."""
    now = datetime.now(UTC)
    known: dict[datetime, str] = {}
    found: list[Expect] = []
    valid: dict[str, int] = {}
    for file in sorted((FILES / "mingo01" / "dat").iterdir()):
        path = file.relative_to(FILES).as_posix()
        if file.name.endswith(".dat"):
            rejects, valid[path] = _dat(path, file.read_bytes(), known, now)
            found += rejects
            continue
        try:
            members = read_dat_archive(file.read_bytes())
        except ArchiveError as exc:
            found += _found(path, "archive", [make_reject(None, rj.CORRUPT_ARCHIVE, str(exc))])
            continue
        for name, data in members:
            rejects, valid[f"{path}!{name}"] = _dat(f"{path}!{name}", data, known, now)
            found += rejects
    return found, valid


def _check(found: list[Expect], kinds: set[str]) -> None:
    expected = [e for e in EXPECTED if e.kind in kinds and e.reason]
    assert sorted(map(_key, found), key=str) == sorted(map(_key, expected), key=str)
    details = {_key(e): e.detail for e in found}
    for e in expected:
        assert e.detail in details[_key(e)], f"{e.path}: {details[_key(e)]!r} lacks {e.detail!r}"


def test_corpus_is_what_the_script_writes() -> None:
    files, expected = build()
    on_disk = {
        p.relative_to(FILES).as_posix(): p.read_bytes() for p in FILES.rglob("*") if p.is_file()
    }
    assert set(on_disk) == set(files), "run python -m tests.data.bad.make_corpus"
    # gzip and NetCDF bytes may differ between zlib/netCDF-C versions; their content is what the
    # other tests check. Everything else must be byte for byte what the script writes.
    for path, data in files.items():
        if not path.endswith((".gz", ".nc", ".zip")):
            assert on_disk[path] == data, (
                f"{path} differs: run python -m tests.data.bad.make_corpus"
            )
    assert read_manifest(MANIFEST) == expected
    assert len(files) >= 30
    # every reason code appears at least once
    assert set(rj.REASONS) <= {e.reason for e in expected}


def test_dat_files_and_archives_give_exactly_the_listed_rejects() -> None:
    found, valid = _run_dat_directory()
    _check(found, {"dat", "archive"})
    for e in EXPECTED:
        if e.kind == "dat" and e.valid is not None:
            assert valid[e.path] == e.valid, e.path


def test_reject_records_name_the_file_line_and_archive() -> None:
    found, _ = _run_dat_directory()
    records: list[RejectRecord] = []
    for e in found:
        archive, _, member = e.path.rpartition("!")
        name = posixpath.basename(member)
        reject = make_reject(e.line, e.reason, e.detail)
        records += reject_records(
            STATION, e.kind, name, [reject], posixpath.basename(archive) or None
        )
    for record, e in zip(records, found, strict=True):
        assert record.source_file in e.path and record.reason == e.reason
        where = "file" if e.line is None else str(e.line)
        assert record.reject_id == f"{STATION}/{record.source_file}/{where}"
        if "!" in e.path:
            assert record.archive == "mi0124067000000.dat.tar.gz"


def test_logs_give_the_listed_rejects_and_keep_their_valid_rows() -> None:
    rejects = _Rejects(STATION)
    readings = station_readings(MADRID, FILES / "mingo01", rejects)
    done = "mingo01/logs/done/"
    found = [Expect(done + r.source_file, "log", r.reason, r.line, r.detail) for r in rejects]
    _check(found, {"log"})
    rows: dict[str, int] = defaultdict(int)
    for reading in readings:
        rows[done + reading.source_file] += 1
    assert dict(rows) == {e.path: e.valid for e in EXPECTED if e.kind == "log"}


def test_each_log_through_the_parser_alone() -> None:
    # the service reads logs piecewise; whole-file parsing must agree with the manifest too
    for e in (e for e in EXPECTED if e.kind == "log"):
        path = FILES / e.path
        log_type = log_type_of_file(path.name)
        assert log_type is not None
        result = parse_log(path.read_bytes(), log_type)
        assert [(r.line, r.reason) for r in result.rejects] == [(e.line, e.reason)]
        assert len(result.rows) == e.valid


def test_logbooks_give_the_listed_rejects_and_keep_their_valid_rows() -> None:
    found: list[Expect] = []
    first_rows: dict[str, Expect] = {}
    for e in EXPECTED:
        if e.kind == "logbook":
            first_rows.setdefault(e.path, e)
    for e in first_rows.values():
        path = FILES / e.path
        text = path.read_bytes().decode("utf-8", errors="replace")  # as ingest decodes it
        entries, rejects = parse_logbook(text, source=path.name)
        found += _found(e.path, "logbook", rejects)
        assert len(entries) == e.valid, e.path
        for reject in rejects:
            assert reject.line is not None or path.name in reject.detail
    _check(found, {"logbook"})


def test_era5_files_are_rejected_by_name_and_the_good_one_still_gives_hours() -> None:
    rejects = _Rejects(STATION)
    hours = station_hours(MADRID, FILES / "era5", rejects)
    found = [
        Expect(f"era5/mingo01/{r.source_file}", "era5", r.reason, r.line, r.detail) for r in rejects
    ]
    _check(found, {"era5"})
    assert [h.time.hour for h in hours] == [0, 1]
    assert all(h.source_file == "era5_good.nc" for h in hours)
    assert hours[0].surface_pressure_hpa == pytest.approx(940.0)


@pytest.mark.parametrize("e", [e for e in EXPECTED if e.kind == "network"], ids=lambda e: e.path)
def test_bad_network_files_stop_with_the_file_and_the_reason(e: Expect) -> None:
    path = FILES / e.path
    with pytest.raises(NetworkConfigError) as info:
        load_network(path)
    message = str(info.value)
    assert message.startswith(str(path)) and e.detail in message


def test_good_station_beside_a_bad_one_is_loaded(tmp_path: Path) -> None:
    # a station list whose second entry is bad is refused whole: the error names that entry
    text = (FILES / "network/latitude.yaml").read_text().replace("- {id: 1", "- {id: 2")
    good = "stations:\n  - {id: 1, name: mingo01, latitude: 40.4, longitude: -3.7}\n"
    network = tmp_path / "stations.yaml"
    network.write_text(good + text.split("\n", 1)[1])
    with pytest.raises(NetworkConfigError, match=r"stations\.1\.latitude"):
        load_network(network)
    network.write_text(good)
    assert isinstance(load_network(network).station(1), Station)
