"""Calibrations as versioned records: a minute is recomputed exactly from its file's raw events
and the calibration record its ``calibration_version`` names (issue 3)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from schemas.models import Calibration as CalibrationRecord
from schemas.models import MinuteRates
from services.common.stations import load_network
from services.reconstruct.calibration import make_calibration
from services.reconstruct.calibration_records import (
    calibration_path,
    from_record,
    read_calibration,
    to_record,
    write_calibration,
)
from services.reconstruct.cli import load_dat
from services.reconstruct.minutes import minute_records
from services.reconstruct.pipeline import rates_rows, reconstruct_files, reconstruct_one

sys.path.insert(0, str(Path(__file__).parent))
from reconstruct_truth import simulate

pytestmark = pytest.mark.unit

Z_MM = (0.0, 150.0, 300.0, 450.0)


def test_minutes_recomputed_exactly_from_stored_calibrations(tmp_path: Path) -> None:
    truth = simulate(tmp_path / "sim", (0,), 0.5)
    entry = truth["stations"]["0"]
    names = sorted(n for n, f in entry["files"].items() if f["path"] and f["readable"])[:4]
    paths = {n: tmp_path / "sim" / entry["files"][n]["path"] for n in names}
    config = load_network().station(0).reconstruction
    results = list(
        reconstruct_files(0, (load_dat(paths[n]) for n in names), lambda _: Z_MM, config)
    )
    published = [MinuteRates(**row).to_json_bytes() for row in rates_rows(0, results)]
    store = tmp_path / "calibrations"
    for result in results:
        write_calibration(store, to_record(result.calibration))
    assert len({r.calibration.version for r in results}) == len(results)  # one per file

    # Every minute again, from nothing but the raw files and the stored records they name.
    recomputed = []
    for name in names:
        version = next(r.calibration.version for r in results if r.name == name)
        stored = read_calibration(calibration_path(store, 0, version))
        assert stored.source_file == name
        assert stored.pool_files[-1] == name
        recomputed.append(reconstruct_one(load_dat(paths[name]), stored, stored.z_mm, config))
    assert [MinuteRates(**r).to_json_bytes() for r in rates_rows(0, recomputed)] == published

    # One minute inside a file (not a boundary minute), from that file and its record alone.
    record = MinuteRates.model_validate_json(published[len(published) // 2 + 10])
    assert "+" not in record.calibration_version
    stored = read_calibration(calibration_path(store, 0, record.calibration_version))
    result = reconstruct_one(load_dat(paths[stored.source_file]), stored, stored.z_mm, config)
    rows = minute_records(result.tally, 0, stored.version)
    again = next(r for r in rows if r["time"] == record.time)
    assert MinuteRates(**again).to_json_bytes() == record.to_json_bytes()


def test_record_round_trip_is_bitwise_and_checks_the_version(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    calibration = dataclasses.replace(
        make_calibration(
            2,
            rng.normal(90, 3, (4, 4, 2)),
            rng.normal(0, 0.1, (4, 4)),
            rng.normal(0, 0.3, (4, 4)),
            1234,
            1_709_251_200,
            1_709_254_800,
            Z_MM,
        ),
        pool_files=("a.dat", "b.dat"),
        source_file="b.dat",
    )
    path = write_calibration(tmp_path, to_record(calibration))
    assert path == tmp_path / "2" / f"{calibration.version}.json"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    back = read_calibration(path)
    for field in ("pedestal_ns", "tdif_offset_ns", "tsum_offset_ns"):
        assert np.array_equal(getattr(back, field), getattr(calibration, field))
    assert (back.version, back.z_mm, back.pool_files) == (
        calibration.version,
        Z_MM,
        ("a.dat", "b.dat"),
    )

    tampered = to_record(calibration).model_dump()
    tsum = np.array(tampered["tsum_offset_ns"])
    tsum[0, 0] += 1e-6
    tampered["tsum_offset_ns"] = tsum.tolist()
    with pytest.raises(ValueError, match="hash to"):
        from_record(CalibrationRecord(**tampered))
    path.write_text("{not json")
    with pytest.raises(ValueError, match=str(path.name)):
        read_calibration(path)
