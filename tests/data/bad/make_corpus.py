"""Writes the bad-input corpus (``tests/data/bad/files``) and its manifest, deterministically.

::

    python -m tests.data.bad.make_corpus        # from the repository root; rewrites files/ and
                                                # manifest.csv byte for byte

The corpus is one station (1, mingo01) laid out as a station PC holds it, plus ERA5 files, other
logbooks and network files:

- ``mingo01/dat/``: ``.dat`` files with every kind of line damage beside valid lines, event
  times outside the file's span, empty, comment-only and binary files, bad, wrong-station,
  future and duplicate names; daily archives that are truncated, not gzip, empty, nested, with
  foreign members, and one valid archive with a damaged member;
- ``mingo01/logs/done/``: slow-control logs with wrong field counts, units glued to values, bad
  timestamps (other separators, an unset clock, impossible days) and control bytes, each beside
  valid lines;
- ``mingo01/logbook.csv``: a logbook whose bad rows sit between good ones;
- ``logbooks/``: logbooks without a header, of binary bytes, with a short row;
- ``era5/mingo01/``: one good NetCDF and ERA5 files that are empty, HTML, corrupt GRIB, cut
  NetCDF, corrupt or foreign ZIPs, of the wrong variables, units or grid, without a lat/lon grid;
- ``network/``: malformed ``stations.yaml`` files.

``manifest.csv`` has one row per expected reject (a file with several bad rows has several):
``path`` (below ``files/``), ``kind`` (dat, archive, log, logbook, era5, network), ``reason`` (a
code of ``services.common.rejects``; ``error`` for network files, which stop a service with a
message instead), ``line`` (empty for whole-file problems), ``detail`` (a substring of the
message) and ``valid`` (records the same file still yields: event lines, log rows, logbook rows;
empty where not applicable, and only on the file's first row).
"""

from __future__ import annotations

import csv
import gzip
import io
import random
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FILES = HERE / "files"
MANIFEST = HERE / "manifest.csv"
STATION = 1
DAY = datetime(2024, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Expect:
    """One expected reject of a corpus file."""

    path: str
    kind: str
    reason: str
    line: int | None
    detail: str
    valid: int | None = None


def event_line(when: datetime, trigger: int = 1, seed: int = 0) -> str:
    """A valid 71-field event line (times about -150 ns, charges about 100 ns, planes 4..1)."""
    rng = random.Random(seed)
    values: list[float] = []
    for _plane in range(4):
        strip = rng.randrange(4)
        block = [0.0] * 16
        block[strip] = -150.0 + rng.randrange(10_000) / 1e4  # T front
        block[4 + strip] = -151.0 + rng.randrange(10_000) / 1e4  # T back
        block[8 + strip] = 100.0 + rng.randrange(100_000) / 1e4  # Q front
        block[12 + strip] = 101.0 + rng.randrange(100_000) / 1e4  # Q back
        values += block
    return f"{when:%Y %m %d %H %M %S} {trigger} " + " ".join(f"{v:09.4f}" for v in values)


def dat_text(start: datetime, n: int, seed: int = 0) -> str:
    """``n`` valid lines one second apart, with the simulator's comment line first."""
    lines = ["# param_hash=corpus"]
    lines += [event_line(start + timedelta(seconds=i), 1, seed + i) for i in range(n)]
    return "\n".join(lines) + "\n"


def dat_name(start: datetime, station: int = STATION) -> str:
    return f"mi0{station}{start:%y%j%H%M%S}.dat"


def _tar_gz(members: list[tuple[str, bytes]]) -> bytes:
    """A deterministic .tar.gz (fixed mtimes, no gzip time stamp)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_709_251_200, 0o644
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members:
            archive.writestr(zipfile.ZipInfo(name, date_time=(2024, 3, 1, 0, 0, 0)), data)
    return out.getvalue()


def _dat_files(put: dict[str, bytes], expect: list[Expect]) -> None:
    def hour(h: int) -> datetime:
        return DAY + timedelta(hours=h)

    def damaged(h: int, bad: str, reason: str, detail: str, *, last: bool = False) -> None:
        start = hour(h)
        good = [event_line(start + timedelta(seconds=i), 1, 100 * h + i) for i in range(3)]
        lines = (
            ["# param_hash=corpus", good[0], good[1], bad]
            if last
            else ["# param_hash=corpus", good[0], bad, good[1], good[2]]
        )
        text = "\n".join(lines) + ("" if last else "\n")
        name = dat_name(start)
        put[f"mingo01/dat/{name}"] = text.encode("latin-1")
        line = 4 if last else 3
        expect.append(Expect(f"mingo01/dat/{name}", "dat", reason, line, detail, 2 if last else 3))

    base = event_line(hour(0), 1, 1)
    fields = base.split(" ")
    damaged(0, " ".join(fields[:-1]), "FIELD_COUNT", "70 fields, expected 71")
    glued = " ".join([*fields[:20], fields[20] + fields[21], *fields[22:]])
    damaged(1, glued, "GLUED_TOKENS", "two values written together")
    damaged(
        2, " ".join([*fields[:30], "-120.144.0", *fields[31:]]), "MALFORMED_NUMBER", "-120.144.0"
    )
    damaged(3, "2024 02 30" + base[10:], "BAD_DATE", "2024-02-30")
    damaged(4, base[:20] + "3" + base[21:], "BAD_TRIGGER_TYPE", "'3'")
    damaged(5, base[: len(base) // 2], "TRUNCATED_LINE", "last line has no newline", last=True)
    damaged(6, base[:100] + "\x00\x00" + base[102:], "BINARY_CONTENT", "0x00")
    damaged(7, base[:100] + "é" + base[101:], "BINARY_CONTENT", "non-text byte")
    damaged(8, " ".join(fields * 20), "FIELD_COUNT", "raw text cut to 2048")

    # Event times outside the file's span (a station clock reset): a second before the start in
    # the name and exactly a day after it are rejected; the last second of that day still counts.
    start = hour(16)
    span = [start - timedelta(seconds=1), start, start + timedelta(seconds=1)]
    span += [start + timedelta(seconds=86_399), start + timedelta(seconds=86_400)]
    name = dat_name(start)
    lines = ["# param_hash=corpus"] + [event_line(t, 1, 1600 + i) for i, t in enumerate(span)]
    put[f"mingo01/dat/{name}"] = ("\n".join(lines) + "\n").encode()
    path = f"mingo01/dat/{name}"
    expect.append(Expect(path, "dat", "OUTSIDE_FILE_SPAN", 2, "before the file's start", 3))
    expect.append(Expect(path, "dat", "OUTSIDE_FILE_SPAN", 6, "longest file span of 86400 s"))

    def whole(name: str, data: bytes, reason: str, detail: str, valid: int | None = 0) -> None:
        put[f"mingo01/dat/{name}"] = data
        expect.append(Expect(f"mingo01/dat/{name}", "dat", reason, None, detail, valid))

    whole(dat_name(hour(9)), b"", "EMPTY_FILE", "file is empty (0 bytes)")
    whole(dat_name(hour(10)), b"# param_hash=corpus\n# nothing else\n\n", "EMPTY_FILE", "")
    noise = np.random.default_rng(5).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    whole(dat_name(hour(11)), noise, "BINARY_CONTENT", "not a text")
    whole(dat_name(hour(12)), bytes(4096), "BINARY_CONTENT", "not a text")
    # Names: a misnamed file still gives its events (timed by their lines); the others give none.
    whole("mi01notadate.dat", dat_text(hour(13), 2, 13).encode(), "BAD_FILE_NAME", "not a", 2)
    whole("mi0123366000000.dat", dat_text(hour(14), 2, 14).encode(), "BAD_FILE_NAME", "day 366", 2)
    whole(
        dat_name(hour(15), station=2), dat_text(hour(15), 2).encode(), "WRONG_STATION", "station 2"
    )
    future = datetime(2099, 1, 1, tzinfo=UTC)
    whole(dat_name(future), dat_text(future, 2).encode(), "FUTURE_FILE", "ahead of now")
    # The legacy name of the first file's acquisition: the same events a second time.
    legacy = "minI" + dat_name(hour(0))[4:]
    whole(legacy, dat_text(hour(0), 3, 0).encode(), "DUPLICATE_FILE", dat_name(hour(0)))

    good_member = dat_text(DAY + timedelta(days=5), 4, 50).encode()
    cases = [
        (1, _tar_gz([("x.dat", good_member)])[:200], "cannot unpack"),
        (2, b"this is not a gzip archive\n", "cannot unpack"),
        (3, b"", "cannot unpack"),
        (
            4,
            _tar_gz([("inner.dat.tar.gz", _tar_gz([("a.dat", good_member)]))]),
            "unexpected member",
        ),
        (
            5,
            _tar_gz([(dat_name(DAY + timedelta(days=5)), good_member), ("README.txt", b"hi\n")]),
            "unexpected member",
        ),
    ]
    for days, data, detail in cases:
        name = dat_name(DAY + timedelta(days=days)) + ".tar.gz"
        put[f"mingo01/dat/{name}"] = data
        expect.append(Expect(f"mingo01/dat/{name}", "archive", "CORRUPT_ARCHIVE", None, detail))
    # A readable archive: one clean member, one with a bad date on line 3.
    day6 = DAY + timedelta(days=6)
    first, second = dat_name(day6), dat_name(day6 + timedelta(hours=1))
    bad_member = dat_text(day6 + timedelta(hours=1), 3, 60).splitlines()
    bad_member[2] = "2024 13 01" + bad_member[2][10:]
    archive = _tar_gz(
        [(first, dat_text(day6, 4, 61).encode()), (second, ("\n".join(bad_member) + "\n").encode())]
    )
    put[f"mingo01/dat/{first}.tar.gz"] = archive
    expect.append(Expect(f"mingo01/dat/{first}.tar.gz!{second}", "dat", "BAD_DATE", 3, "month", 2))
    expect.append(Expect(f"mingo01/dat/{first}.tar.gz!{first}", "dat", "", None, "", 4))


def _log_files(put: dict[str, bytes], expect: list[Expect]) -> None:
    def log(name: str, good: list[str], bad: str, reason: str, detail: str) -> None:
        path = f"mingo01/logs/done/{name}"
        put[path] = ("\n".join([good[0], bad, *good[1:]]) + "\n").encode("latin-1")
        expect.append(Expect(path, "log", reason, 2, detail, len(good)))

    bus = [
        "2024-03-01T00:00:00; 0 0 0 0 18.5 40.2 945.1",
        "2024-03-01T00:15:00; 0 0 0 0 18.4 40.0 945.0",
    ]
    log(
        "sensors_bus0_2024-03-01.log",
        bus,
        "2024-03-01T00:05:00; 0 0 0 0 18.5",
        "FIELD_COUNT",
        "expected at least 7",
    )
    log(
        "sensors_bus0_2024-03-02.log",
        [b.replace("03-01", "03-02") for b in bus],
        "2024-03-02T00:05:00; 0 0 0 0 18.5C 40.2% 945.1hPa",
        "MALFORMED_NUMBER",
        "'18.5C'",
    )
    rates = "2024-03-01 00:00:00 14.1 20.2 8.3 100 101 99 98 7.1 7.2 7.0 7.3"
    log(
        "rates_2024-03-01.log",
        [rates, rates.replace("00:00:00", "00:10:00")],
        "2024/03/01 00:05:00 14.1 20.2 8.3 100 101 99 98 7.1 7.2 7.0 7.3",
        "BAD_TIMESTAMP",
        "is not a timestamp",
    )
    flow = "2024-03-01T00:00:00 900 910 905 899"
    log(
        "Flow0_2024-03-01.log",
        [flow, flow.replace("00:00:00", "00:30:00")],
        "1970-01-01T00:00:12 900 910 905 899",
        "BAD_TIMESTAMP",
        "clock not set",
    )
    log(
        "Flow0_2024-03-02.log",
        [flow.replace("03-01", "03-02")],
        "2024-02-30T00:15:00 900 910 905 899",
        "BAD_TIMESTAMP",
        "not a real time",
    )
    disk = "2024-03-01T00:00:00 41 12 0"
    log(
        "Odroid_2024-03-01.log",
        [disk, disk.replace("00:00:00", "00:10:00")],
        "2024-03-01T00:05:00 41\x00 12 0",
        "BINARY_CONTENT",
        "0x00",
    )
    hv = "2024-03-01T00:00:00 " + " ".join(["0"] * 6 + ["1.2", "1.3", "-5.6", "5.6"] + ["0"] * 11)
    log(
        "hv0_2024-03-01.log",
        [hv, hv.replace("00:00:00", "00:30:00")],
        "2024-03-01T00:15:00x " + hv[20:],
        "BAD_TIMESTAMP",
        "followed by 'x'",
    )


LOGBOOK_HEADER = "station,conf,start,end,P1,P2,P3,P4,C1,C2,C3,C4"


def _logbooks(put: dict[str, bytes], expect: list[Expect]) -> None:
    rows = [
        LOGBOOK_HEADER,
        "1,1,2024-01-01,2024-02-29,0,150,300,450,12,23,34,13",
        "1,2,2024-03-01,,0,145,290,435,12,23,34,",
        "1,3,2024-05-01,,0,300,150,450,12,23,34,13",
        "1,4,2024-06-01,2024-05-01,0,150,300,450,12,23,34,13",
        "1,5,2024-07-01,,0,150,300,450,11,,,",
        "1,6,2024-32-01,,0,150,300,450,12,,,",
        "1,7,2024-08-01,,0,150,300",
        "2,1,2024-01-01,,0,65,130,195,12,34,,",
    ]
    put["mingo01/logbook.csv"] = ("\n".join(rows) + "\n").encode()
    details = [
        "not strictly increasing",
        "is not after start",
        "'11' is not a pair",
        "is not a date",
        "cells, expected 12",
    ]
    for i, detail in enumerate(details):
        valid = 3 if i == 0 else None
        expect.append(
            Expect("mingo01/logbook.csv", "logbook", "BAD_LOGBOOK_ROW", 4 + i, detail, valid)
        )
    put["logbooks/no_header.csv"] = b"1,1,2024-01-01,,0,150,300,450,12,23,34,13\n"
    expect.append(
        Expect(
            "logbooks/no_header.csv",
            "logbook",
            "BAD_LOGBOOK_ROW",
            None,
            "header lacks column(s)",
            0,
        )
    )
    put["logbooks/binary.csv"] = bytes(range(256)) * 4
    expect.append(Expect("logbooks/binary.csv", "logbook", "BAD_LOGBOOK_ROW", None, "header", 0))
    put["logbooks/empty.csv"] = b""
    expect.append(
        Expect("logbooks/empty.csv", "logbook", "BAD_LOGBOOK_ROW", None, "no header row", 0)
    )


def _era5_netcdf(
    variables: dict[str, tuple[float, str]],
    lat: tuple[float, float] = (40.0, 41.0),
    lon: tuple[float, float] = (-4.5, -3.0),
    dims: tuple[str, str] = ("latitude", "longitude"),
) -> bytes:
    """A small ERA5-like NetCDF (new CDS layout) with constant fields (value, 'sfc'|'pl')."""
    import xarray as xr

    times = np.array(["2024-03-01T00", "2024-03-01T01"], dtype="datetime64[ns]")
    lats, lons = np.linspace(lat[1], lat[0], 5), np.linspace(lon[0], lon[1], 7)
    data_vars = {}
    for name, (value, kind) in variables.items():
        if kind == "pl":
            data_vars[name] = (
                ("valid_time", "pressure_level", *dims),
                np.full((2, 1, 5, 7), value),
            )
        else:
            data_vars[name] = (("valid_time", *dims), np.full((2, 5, 7), value))
    coords = {"valid_time": times, dims[0]: lats, dims[1]: lons}
    if any(kind == "pl" for _, kind in variables.values()):
        coords["pressure_level"] = np.array([100.0])
    ds = xr.Dataset(data_vars, coords=coords)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "era5.nc"
        # NetCDF-3 holds no creation time, so the bytes are the same on every run.
        ds.to_netcdf(path, format="NETCDF3_64BIT", engine="netcdf4")
        return path.read_bytes()


def _era5_files(put: dict[str, bytes], expect: list[Expect]) -> None:
    good_vars = {
        "t2m": (285.0, "sfc"),
        "sp": (94_000.0, "sfc"),
        "t": (215.0, "pl"),
        "z": (160_000.0, "pl"),
    }
    good = _era5_netcdf(good_vars)
    put["era5/mingo01/era5_good.nc"] = good

    def bad(name: str, data: bytes, detail: str) -> None:
        put[f"era5/mingo01/{name}"] = data
        expect.append(Expect(f"era5/mingo01/{name}", "era5", "BAD_ERA5_FILE", None, detail))

    bad("empty.nc", b"", "empty file")
    bad("error_page.nc", b"<html><body>502 Bad Gateway</body></html>\n", "unknown format")
    bad(
        "corrupt.grib",
        b"GRIB" + bytes(np.random.default_rng(7).integers(0, 256, 500, np.uint8)),
        "corrupt or unreadable GRIB",
    )
    bad("cut.nc", good[: len(good) // 3], "latitudes repeat")
    bad("corrupt.zip", b"PK\x03\x04" + bytes(60), "corrupt ZIP")
    bad("foreign.zip", _zip([("readme.txt", b"not era5\n")]), "unknown format")
    bad("wind_only.nc", _era5_netcdf({"u10": (3.0, "sfc")}), "none of the variables")
    bad("celsius.nc", _era5_netcdf({"t2m": (12.0, "sfc")}), "wrong units")
    bad(
        "pacific.nc",
        _era5_netcdf(good_vars, lat=(10.0, 11.0), lon=(150.0, 151.5)),
        "outside the grid",
    )
    bad(
        "projected.nc", _era5_netcdf({"t2m": (285.0, "sfc")}, dims=("y", "x")), "latitude/longitude"
    )


def _network_files(put: dict[str, bytes], expect: list[Expect]) -> None:
    def net(name: str, text: str, detail: str) -> None:
        put[f"network/{name}"] = text.encode()
        expect.append(Expect(f"network/{name}", "network", "error", None, detail))

    one = "  - {id: 1, name: mingo01, latitude: 40.4, longitude: -3.7}\n"
    net("not_yaml.yaml", "stations: [\n  - {id: 1\n", "not valid YAML")
    net("a_list.yaml", one, "expected a mapping")
    net("empty.yaml", "", "expected a mapping")
    net("duplicate_ids.yaml", "stations:\n" + one + one, "must be unique")
    net("latitude.yaml", "stations:\n  - {id: 1, name: m, latitude: 123}\n", "latitude")
    net(
        "sftp_no_host.yaml",
        "stations:\n  - {id: 1, name: m, source: {kind: sftp, root: /d}}\n",
        "needs a host",
    )
    net("typo.yaml", "stations:\n  - {id: 1, name: m, latitud: 40.4}\n", "latitud")
    net("station_id.yaml", "stations:\n  - {id: 12, name: m}\n", "less than or equal to 9")
    net("binary.yaml", "\x00\x01\x02stations", "not valid YAML")


def build() -> tuple[dict[str, bytes], list[Expect]]:
    """Every corpus file (path below ``files/`` -> bytes) and the expected rejects."""
    put: dict[str, bytes] = {}
    expect: list[Expect] = []
    for part in (_dat_files, _log_files, _logbooks, _era5_files, _network_files):
        part(put, expect)
    return put, expect


def read_manifest(path: Path = MANIFEST) -> list[Expect]:
    """The manifest rows."""
    with path.open(newline="") as handle:
        return [
            Expect(
                r["path"],
                r["kind"],
                r["reason"],
                int(r["line"]) if r["line"] else None,
                r["detail"],
                int(r["valid"]) if r["valid"] else None,
            )
            for r in csv.DictReader(handle)
        ]


def main() -> None:
    put, expect = build()
    shutil.rmtree(FILES, ignore_errors=True)
    for relative, data in put.items():
        target = FILES / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    with MANIFEST.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "kind", "reason", "line", "detail", "valid"])
        for e in expect:
            writer.writerow(
                [
                    e.path,
                    e.kind,
                    e.reason,
                    e.line or "",
                    e.detail,
                    "" if e.valid is None else e.valid,
                ]
            )
    print(f"{len(put)} files, {len(expect)} manifest rows in {FILES}")


if __name__ == "__main__":
    main()
