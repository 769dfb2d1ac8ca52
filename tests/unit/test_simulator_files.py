"""What ``mingo simulate`` writes: layout, names, damage bookkeeping, archives, logs, ERA5, truth.

Validity of lines is checked here with a small strict checker of its own (not the ingest parser).
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import xarray as xr
from click.testing import CliRunner

from schemas.dat_format import parse_dat_filename
from schemas.station_logs import LOG_TYPES, log_type_of_file
from services.common.atmosphere import ERA5_PRESSURE_LEVELS_HPA, G0_M_S2, effective_temperature
from services.common.stations import load_network
from simulator.cli import simulate
from simulator.era5 import bilinear
from simulator.run import OutputDirectoryError, SimulationRequest, run_batch
from tests.simulated import strict_valid_line

pytestmark = pytest.mark.unit

STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2});?$")

START = date(2024, 3, 1)


def run(
    out: Path, stations: tuple[int, ...], days: int, rate: float, damage: float, **kw: Any
) -> dict[str, Any]:
    network = load_network()
    request = SimulationRequest(
        out=out,
        stations=tuple(network.station(s) for s in stations),
        start=START,
        days=days,
        seed=5,
        rate_hz=rate,
        damage=damage,
        acceptance_samples=50_000,
        **kw,
    )
    return run_batch(request)


@pytest.fixture(scope="module")
def one_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("one_day")
    return out, run(out, (1,), 1, 1.0, 0.01)


@pytest.fixture(scope="module")
def three_days(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("three_days")
    return out, run(out, (2,), 3, 0.3, 0.01)


def read_lines(data: bytes) -> tuple[list[str], bool]:
    """Physical lines and whether the data ends with a newline."""
    text = data.decode("ascii")
    ends = text.endswith("\n")
    lines = text.split("\n")
    if ends:
        lines.pop()
    return lines, ends


def check_file(name: str, data: bytes, entry: dict[str, Any], damaged: dict[int, str]) -> None:
    """Every listed damaged line is invalid, every other event line valid; counts match."""
    lines, ends = read_lines(data)
    assert len(lines) == entry["lines"]
    assert lines[0].startswith("# param_hash=")
    counts = {"1": 0, "2": 0}
    for number, line in enumerate(lines[1:], start=2):
        ok = strict_valid_line(line)
        assert ok != (number in damaged), (name, number, damaged.get(number), line[:90])
        if ok:
            counts[line.split(" ")[6]] += 1
    assert counts == entry["valid_events"]
    assert entry["lines"] == 1 + sum(counts.values()) + entry["damaged_lines"]
    assert ends != entry["truncated"]


def damaged_by_file(truth_station: dict[str, Any]) -> dict[str, dict[int, str]]:
    out: dict[str, dict[int, str]] = {}
    for d in truth_station["damaged_lines"]:
        out.setdefault(d["file"], {})[d["line"]] = d["kind"]
    return out


# ----------------------------------------------------------------------------------------- layout


def test_layout_and_names(one_day: tuple[Path, dict[str, Any]]) -> None:
    out, truth = one_day
    station = truth["stations"]["1"]
    dat = out / "mingo01" / "dat"
    plain = sorted(p.name for p in dat.glob("*.dat"))
    assert len(plain) == 25  # 24 hours + one empty file
    day0 = datetime(2024, 3, 1, tzinfo=UTC)
    for name in plain:
        sid, start = parse_dat_filename(name)
        assert sid == 1 and day0 <= start < day0 + timedelta(days=1)
        assert start.minute == 0 and 1 <= start.second <= 16  # on the hour plus a few seconds
        assert name in station["files"]
        entry = station["files"][name]
        if not entry["empty"]:
            assert (out / entry["truth_parquet"]).is_file()
    hours = sorted({parse_dat_filename(n)[1].hour for n in plain})
    assert hours == list(range(24))
    assert (out / "mingo01" / "logbook.csv").is_file()
    logbook = pd.read_csv(out / "mingo01" / "logbook.csv")
    assert list(logbook.columns) == [
        "station",
        "conf",
        "start",
        "end",
        "P1",
        "P2",
        "P3",
        "P4",
        "C1",
        "C2",
        "C3",
        "C4",
    ]
    current = logbook[logbook["start"] == "2024-03-01"].iloc[0]
    assert [current[f"P{k}"] for k in range(1, 5)] == [0, 150, 300, 450]
    assert [current[f"C{k}"] for k in range(1, 5)] == [12, 23, 34, 13]
    assert sorted(p.name for p in (out / "era5" / "mingo01").iterdir()) == [
        "reanalysis-era5-pressure-levels_2024-03-01.nc",
        "reanalysis-era5-single-levels_2024-03-01.nc",
    ]
    logs = sorted(p.name for p in (out / "mingo01" / "logs").glob("*.log"))
    assert logs == sorted(t.filename("2024-03-01") for t in LOG_TYPES)
    weather = pd.read_csv(out / station["weather_hourly"])
    assert list(weather.columns) == [
        "time", "pressure_hpa", "temp_ground_c", "temp_100hpa_c",
        "height_100hpa_m", "t_mw_k", "t_eff_k", "rate_factor",
    ]  # fmt: skip
    json.dumps(truth)  # serialisable as written


def test_truth_parameters(one_day: tuple[Path, dict[str, Any]]) -> None:
    _, truth = one_day
    p = truth["stations"]["1"]["parameters"]
    for key in ("rate_hz", "rate_generated_hz", "beta_pct_per_hpa", "p0_hpa", "alpha_t_pct_per_k",
                "teff_ref_k", "barometer_offset_hpa", "acceptance"):  # fmt: skip
        assert key in p
    det = p["detector"]
    assert len(det["efficiency"]) == 4 and all(0.92 <= e <= 0.96 for e in det["efficiency"])
    assert det["z_mm"] == [0.0, 150.0, 300.0, 450.0] and det["trigger_pairs"] == [12, 23, 34, 13]
    assert len(det["t_offset_ns"]) == 32 and all(
        -131 <= v <= -121 for v in det["t_offset_ns"].values()
    )
    assert len(det["q_pedestal_ns"]) == 32 and all(
        85 <= v <= 95 for v in det["q_pedestal_ns"].values()
    )


# ----------------------------------------------------------------------------------------- damage


def test_damaged_lines_are_invalid_and_others_valid(one_day: tuple[Path, dict[str, Any]]) -> None:
    out, truth = one_day
    station = truth["stations"]["1"]
    damaged = damaged_by_file(station)
    kinds = {d["kind"] for d in station["damaged_lines"]}
    assert {
        "missing_field",
        "glued_tokens",
        "malformed_number",
        "bad_month",
        "truncated_line",
    } <= kinds
    for name, entry in station["files"].items():
        data = (out / entry["path"]).read_bytes()
        if entry["empty"]:
            assert data == b""
            continue
        check_file(name, data, entry, damaged.get(name, {}))
    totals = station["totals"]
    assert totals["damaged_lines"] == len(station["damaged_lines"])
    # about 1 % of the event lines (binomial, 5σ)
    n_events = totals["valid_events"]["1"] + totals["valid_events"]["2"] + totals["damaged_lines"]
    assert abs(totals["damaged_lines"] - 0.01 * n_events) < 5 * np.sqrt(0.01 * n_events)


def test_single_file_and_archive_damage(one_day: tuple[Path, dict[str, Any]]) -> None:
    out, truth = one_day
    station = truth["stations"]["1"]
    assert len(station["truncated_lines"]) == 1
    trunc = station["truncated_lines"][0]
    data = (out / "mingo01" / "dat" / trunc["file"]).read_bytes()
    assert not data.endswith(b"\n") and data.count(b"\n") == trunc["line"] - 1
    assert len(station["empty_files"]) == 1
    assert (out / station["empty_files"][0]["path"]).stat().st_size == 0
    (corrupt,) = station["corrupt_archives"]
    assert corrupt["day"] == "2024-02-29"
    with (
        pytest.raises((tarfile.TarError, EOFError, OSError)),
        tarfile.open(out / corrupt["path"]) as tar,
    ):
        for member in tar:
            tar.extractfile(member).read()  # type: ignore[union-attr]
    kinds = {d["kind"] for d in station["logs"]["damaged_lines"]}
    assert kinds == {"too_few_values", "bad_timestamp", "non_numeric"}


def test_truth_parquet_is_keyed_by_line(one_day: tuple[Path, dict[str, Any]]) -> None:
    out, truth = one_day
    station = truth["stations"]["1"]
    damaged = damaged_by_file(station)
    checked = 0
    for name, entry in list(station["files"].items())[:6]:
        if entry["empty"]:
            continue
        lines, _ = read_lines((out / entry["path"]).read_bytes())
        table = pq.read_table(out / entry["truth_parquet"]).to_pandas()
        assert len(table) == entry["events"]
        for row in table.itertuples():
            line = lines[row.line - 1]
            if row.line in damaged.get(name, {}):
                assert row.damage == damaged[name][row.line]
                continue
            assert row.damage == ""
            fields = line.split(" ")
            assert int(fields[6]) == row.trigger_type
            stamp = datetime.strptime(" ".join(fields[:6]), "%Y %m %d %H %M %S")
            assert stamp.replace(tzinfo=UTC) == row.time.to_pydatetime()
            checked += 1
    assert checked > 1000


# --------------------------------------------------------------------------------------- archives


def test_archives(three_days: tuple[Path, dict[str, Any]]) -> None:
    out, truth = three_days
    station = truth["stations"]["2"]
    dat = out / "mingo02" / "dat"
    archives = sorted(p.name for p in dat.glob("*.dat.tar.gz"))
    assert len(archives) == 2 and len(list(dat.glob("*.dat"))) == 25
    assert set(station["archives"]) == set(archives)
    damaged = damaged_by_file(station)
    for name, archive in station["archives"].items():
        first = min(archive["members"])
        assert name == first + ".tar.gz"  # named after the day's first file
        assert len(archive["members"]) == 24
        if archive["corrupt"]:
            assert all(not station["files"][m]["readable"] for m in archive["members"])
            with (
                pytest.raises((tarfile.TarError, EOFError, OSError)),
                tarfile.open(dat / name) as tar,
            ):
                for member in tar:
                    tar.extractfile(member).read()  # type: ignore[union-attr]
            continue
        with tarfile.open(dat / name) as tar:
            members = tar.getmembers()
            assert [m.name for m in members] == archive["members"]
            for member in members:
                entry = station["files"][member.name]
                assert entry["archive"] == name and entry["readable"]
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                check_file(member.name, data, entry, damaged.get(member.name, {}))
    totals = station["totals"]
    readable = [f for f in station["files"].values() if f["readable"]]
    assert totals["valid_events"]["1"] == sum(f["valid_events"]["1"] for f in readable)
    assert totals["events_in_unreadable_files"] > 0
    assert sorted(p.name for p in (out / "mingo02" / "logs" / "done").glob("*.log")) == sorted(
        t.filename(d) for t in LOG_TYPES for d in ("2024-03-01", "2024-03-02")
    )


# ------------------------------------------------------------------------------------------- logs


def parse_log_line(line: str, min_values: int) -> tuple[datetime, list[float]] | None:
    """A log line as the network writes it, or None when it is damaged."""
    parts = line.split(" ")
    if len(parts) > 1 and re.fullmatch(r"\d{2}:\d{2}:\d{2};?", parts[1]):
        parts = [parts[0] + " " + parts[1], *parts[2:]]
    m = STAMP.match(parts[0])
    if m is None:
        return None
    try:
        stamp = datetime.strptime(f"{m[1]} {m[2]}", "%Y-%m-%d %H:%M:%S")
        values = [float(v) for v in parts[1:]]
    except ValueError:
        return None
    if len(values) < min_values:
        return None
    return stamp, values


def test_logs_have_the_real_layouts(one_day: tuple[Path, dict[str, Any]]) -> None:
    out, truth = one_day
    station = truth["stations"]["1"]
    damaged = {(d["file"], d["line"]) for d in station["logs"]["damaged_lines"]}
    params = station["parameters"]
    weather = pd.read_csv(out / station["weather_hourly"])
    weather_t = (pd.to_datetime(weather["time"]) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(
        seconds=1
    )
    styles = set()
    for rel, info in station["logs"]["files"].items():
        path = out / rel
        log_type = log_type_of_file(path.name)
        assert log_type is not None and log_type.source == info["type"]
        lines = path.read_text().splitlines()
        assert len(lines) == info["lines"] == 86400 // log_type.cadence_s
        for number, line in enumerate(lines, start=1):
            parsed = parse_log_line(line, log_type.min_values)
            assert (parsed is None) == ((rel, number) in damaged), (rel, number, line)
            if parsed is None:
                continue
            styles.add(
                "semicolon" if ";" in line.split(" ")[0] else "space" if line[10] == " " else "T"
            )
            stamp, values = parsed
            assert len(values) == log_type.min_values
            for column in log_type.columns:
                v = values[column.position]
                if column.low is not None and not column.name.startswith("temperature"):
                    assert column.low <= v <= column.high, (column.name, v)  # type: ignore[operator]
            if log_type.prefix == "sensors_bus0_":
                true_p = np.interp(
                    stamp.replace(tzinfo=UTC).timestamp(), weather_t, weather["pressure_hpa"]
                )
                assert (
                    abs(values[6] - true_p - params["barometer_offset_hpa"])
                    < 5 * params["barometer_noise_hpa"]
                )
    assert styles == {"semicolon", "space", "T"}


def test_trigger_counters_follow_the_events(one_day: tuple[Path, dict[str, Any]]) -> None:
    out, truth = one_day
    station = truth["stations"]["1"]
    rates = out / "mingo01" / "logs" / "rates_2024-03-01.log"
    accepted = []
    for line in rates.read_text().splitlines():
        parsed = parse_log_line(line, 11)
        if parsed is not None:
            accepted.append(parsed[1][2])
    totals = station["totals"]
    events = totals["triggered_events"] + totals["self_trigger_events"]
    assert np.mean(accepted) == pytest.approx(events / totals["live_s"], rel=0.02)


# ------------------------------------------------------------------------------------------- ERA5


def test_era5_layout_and_interpolation(one_day: tuple[Path, dict[str, Any]]) -> None:
    out, truth = one_day
    station = truth["stations"]["1"]
    lat, lon = station["parameters"]["latitude"], station["parameters"]["longitude"]
    weather = pd.read_csv(out / station["weather_hourly"])
    weather = weather[weather["time"].str.startswith("2024-03-01")].reset_index(drop=True)
    single = xr.open_dataset(
        out / "era5" / "mingo01" / "reanalysis-era5-single-levels_2024-03-01.nc"
    )
    plev = xr.open_dataset(
        out / "era5" / "mingo01" / "reanalysis-era5-pressure-levels_2024-03-01.nc"
    )
    for ds in (single, plev):
        assert ds["valid_time"].dtype.kind == "M" and ds.sizes["valid_time"] == 24
        assert np.all(np.diff(ds["latitude"].values) < 0)
        assert np.all((ds["longitude"].values >= -180) & (ds["longitude"].values <= 180))
        assert ds["latitude"].min() <= lat <= ds["latitude"].max()
        assert ds["longitude"].min() <= lon <= ds["longitude"].max()
        assert int(ds["number"]) == 0 and ds["number"].ndim == 0
        assert list(ds["expver"].values) == ["0001"] * 24
        assert ds["latitude"].attrs["units"] == "degrees_north"
    assert np.array_equal(plev["pressure_level"].values, ERA5_PRESSURE_LEVELS_HPA)
    assert plev["pressure_level"].attrs["units"] == "hPa"
    assert single["t2m"].dims == ("valid_time", "latitude", "longitude")
    assert plev["t"].dims == ("valid_time", "pressure_level", "latitude", "longitude")
    assert {
        single["t2m"].attrs["units"],
        single["sp"].attrs["units"],
        plev["z"].attrs["units"],
    } == {"K", "Pa", "m**2 s**-2"}
    assert single["t2m"].dtype == np.float32
    # bilinear interpolation at the station = the hourly truth (float32 storage: ~1e-5 relative)
    t2m = bilinear(single["t2m"], lat, lon) - 273.15
    sp = bilinear(single["sp"], lat, lon) / 100
    t100 = bilinear(plev["t"].sel(pressure_level=100.0), lat, lon) - 273.15
    z100 = bilinear(plev["z"].sel(pressure_level=100.0), lat, lon) / G0_M_S2
    assert np.allclose(t2m, weather["temp_ground_c"], atol=1e-3)
    assert np.allclose(sp, weather["pressure_hpa"], atol=1e-3)
    assert np.allclose(t100, weather["temp_100hpa_c"], atol=1e-3)
    assert np.allclose(z100, weather["height_100hpa_m"], atol=0.01)
    # T_eff from the ERA5 profile with the shared function = the truth
    profile = bilinear(plev["t"], lat, lon)
    teff = effective_temperature(plev["pressure_level"].values, profile, sp)
    assert np.allclose(teff, weather["t_eff_k"], atol=1e-3)


# ------------------------------------------------------------------------------- determinism, CLI


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes(tmp_path: Path, one_day: tuple[Path, dict[str, Any]]) -> None:
    out, _ = one_day
    again = tmp_path / "again"
    run(again, (1,), 1, 1.0, 0.01, workers=1)
    assert _digest(again) == _digest(out)


def test_refuses_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(OutputDirectoryError):
        run(tmp_path, (1,), 1, 0.2, 0.0)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    args = [
        "--stations", "2", "--start", "2024-03-01", "--days", "1", "--out", str(out),
        "--rate-hz", "0.2", "--seed", "9", "--quiet", "--beta", "-0.15",
    ]  # fmt: skip
    result = runner.invoke(simulate, args)
    assert result.exit_code == 0, result.output
    truth = json.loads((out / "truth.json").read_text())
    assert truth["stations"]["2"]["parameters"]["beta_pct_per_hpa"] == -0.15
    assert truth["stations"]["2"]["totals"]["damaged_lines"] == 0
    # a second run into its own output directory replaces it
    assert runner.invoke(simulate, args).exit_code == 0
    bad = runner.invoke(
        simulate, ["--stations", "7", "--start", "2024-03-01", "--out", str(tmp_path / "x")]
    )
    assert bad.exit_code != 0 and "7" in bad.output
