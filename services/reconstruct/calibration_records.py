"""Calibrations as versioned records: the ``mingo.calibration.v2`` contract and files on disk.

A :class:`~services.reconstruct.calibration.Calibration` becomes a
:class:`schemas.models.Calibration` record (JSON) for the compacted calibration topic, and the
same JSON is kept on disk as ``<directory>/<station>/<version>.json``. Floats survive the JSON
round trip exactly (shortest repr), so a minute recomputed from its file's raw events and the
stored record equals the published one; :func:`from_record` checks that the constants still
hash to the version they are stored under.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from schemas.models import Calibration as CalibrationRecord
from services.reconstruct.calibration import Calibration, make_calibration

__all__ = [
    "calibration_path",
    "from_record",
    "read_calibration",
    "to_record",
    "write_calibration",
]


def to_record(calibration: Calibration) -> CalibrationRecord:
    """The topic/disk record of a calibration."""
    return CalibrationRecord(
        station=calibration.station,
        version=calibration.version,
        pedestal_ns=calibration.pedestal_ns.tolist(),
        tdif_offset_ns=calibration.tdif_offset_ns.tolist(),
        tsum_offset_ns=calibration.tsum_offset_ns.tolist(),
        z_mm=calibration.z_mm,
        outlier_band=calibration.outlier_band,
        events=calibration.events,
        first_time_s=calibration.first_time_s,
        last_time_s=calibration.last_time_s,
        pool_files=list(calibration.pool_files),
        source_file=calibration.source_file,
        source_chunk=calibration.source_chunk,
    )


def from_record(record: CalibrationRecord) -> Calibration:
    """The calibration of a record; ValueError if its constants do not match its version."""
    made = make_calibration(
        record.station,
        np.array(record.pedestal_ns, np.float64),
        np.array(record.tdif_offset_ns, np.float64),
        np.array(record.tsum_offset_ns, np.float64),
        record.events,
        record.first_time_s,
        record.last_time_s,
        record.z_mm,
        record.outlier_band,
    )
    if made.version != record.version:
        raise ValueError(
            f"calibration {record.version}: the constants hash to {made.version}, not its version"
        )
    return replace(
        made,
        pool_files=tuple(record.pool_files),
        source_file=record.source_file,
        source_chunk=record.source_chunk,
    )


def calibration_path(directory: Path, station: int, version: str) -> Path:
    """Where a calibration version is kept: ``<directory>/<station>/<version>.json``."""
    return directory / str(station) / f"{version}.json"


def write_calibration(directory: Path, record: CalibrationRecord) -> Path:
    """Write the record's JSON atomically (temporary file, fsync, rename); returns the path.

    Writing a version again rewrites the same bytes (versions are deterministic).
    """
    path = calibration_path(directory, record.station, record.version)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(record.to_json_bytes())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_calibration(path: Path) -> Calibration:
    """A calibration kept on disk (see :func:`write_calibration`)."""
    try:
        record = CalibrationRecord.model_validate_json(path.read_bytes())
    except ValueError as exc:
        raise ValueError(f"{path}: not a calibration record: {exc}") from None
    return from_record(record)
