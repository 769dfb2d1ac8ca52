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
from services.reconstruct.calibration import Calibration, make_calibration
from services.reconstruct.calibration_records import (
    from_record,
    read_calibration,
    to_record,
    write_calibration,
)
from services.reconstruct.cli import load_dat
from services.reconstruct.pipeline import (
    rates_rows,
    recompute_chunks,
    reconstruct_files,
    tally_rows,
)

sys.path.insert(0, str(Path(__file__).parent))
from reconstruct_truth import simulate

pytestmark = pytest.mark.unit

Z_MM = (0.0, 150.0, 300.0, 450.0)
CHUNK = 300  #: events per chunk (several chunks per file)


def test_minutes_recomputed_exactly_from_stored_calibrations(tmp_path: Path) -> None:
    truth = simulate(tmp_path / "sim", (0,), 0.5)
    entry = truth["stations"]["0"]
    names = sorted(n for n, f in entry["files"].items() if f["path"] and f["readable"])[:4]
    paths = {n: tmp_path / "sim" / entry["files"][n]["path"] for n in names}
    config = (
        load_network()
        .station(0)
        .reconstruction.model_copy(
            update={"calibration_min_events": 500, "calibration_refresh_events": 1500}
        )
    )
    files = (load_dat(paths[n]) for n in names)
    results = list(reconstruct_files(0, files, lambda _: Z_MM, config, False, CHUNK))
    published = [MinuteRates(**row).to_json_bytes() for row in rates_rows(0, results)]
    store = tmp_path / "calibrations"
    for calibration in {r.calibration.version: r.calibration for r in results}.values():
        write_calibration(store, to_record(calibration))

    # Every minute again, from nothing but the raw files and the stored records.
    stored = sorted(
        (read_calibration(p) for p in (store / "0").glob("*.json")),
        key=lambda c: (c.source_file, c.source_chunk),
    )
    assert len(stored) >= 4

    def calibration_of(name: str, index: int) -> Calibration:
        """The latest calibration starting at or before the chunk (the first one also for the
        chunks held before it)."""
        earlier = [c for c in stored if (c.source_file, c.source_chunk) <= (name, index)]
        return earlier[-1] if earlier else stored[0]

    tallies = [
        t
        for n in names
        for t in recompute_chunks(0, load_dat(paths[n]), calibration_of, config, CHUNK)
    ]
    assert [MinuteRates(**r).to_json_bytes() for r in tally_rows(0, tallies)] == published

    # One minute inside a file (not a boundary minute), from that file and the records alone.
    record = MinuteRates.model_validate_json(published[len(published) // 2 + 10])
    name = next(r.name for r in results if (r.time_s // 60 * 60 == record.time.timestamp()).any())
    rows = tally_rows(0, recompute_chunks(0, load_dat(paths[name]), calibration_of, config, CHUNK))
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
            (-1.5, 17.25),
        ),
        pool_files=("a.dat", "b.dat"),
        source_file="b.dat",
        source_chunk=3,
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
    assert (back.outlier_band, back.source_file, back.source_chunk) == ((-1.5, 17.25), "b.dat", 3)

    tampered = to_record(calibration).model_dump()
    tsum = np.array(tampered["tsum_offset_ns"])
    tsum[0, 0] += 1e-6
    tampered["tsum_offset_ns"] = tsum.tolist()
    with pytest.raises(ValueError, match="hash to"):
        from_record(CalibrationRecord(**tampered))
    shifted = to_record(calibration).model_dump() | {"outlier_band": (-1.5, 18.0)}
    with pytest.raises(ValueError, match="hash to"):  # the band is part of the version
        from_record(CalibrationRecord(**shifted))
    path.write_text("{not json")
    with pytest.raises(ValueError, match=str(path.name)):
        read_calibration(path)
