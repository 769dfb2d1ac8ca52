"""Per-station daily files of the unified table: CSV and Parquet, rewritten atomically.

Layout: ``OUT/mingo0<S>/YYYY/MM/unified_YYYY_MM_DD.csv`` (and ``.parquet`` beside it), one row
per minute, columns in the order of the unified contract. When a batch touches a day, the day is
merged with what is on disk (per minute the highest revision wins; on a tie the newer delivery)
and written to a temporary file in the same folder that is then renamed over the old one, so a
reader sees either the old or the new file, never a partial one.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from services.sink.lineprotocol import QUALITY_SEPARATOR, UNIFIED_KINDS, FieldKind

log = logging.getLogger(__name__)

#: Columns of the files, in contract order (the contract's version is not a column).
COLUMNS: tuple[str, ...] = tuple(n for n, k in UNIFIED_KINDS.items() if k is not FieldKind.SKIP)
_DTYPES: dict[str, str] = {
    name: {FieldKind.TAG: "int64", FieldKind.INT: "int64", FieldKind.FLOAT: "float64"}.get(
        kind, "object"
    )
    for name, kind in UNIFIED_KINDS.items()
    if name in COLUMNS and kind is not FieldKind.TIME
}
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def station_dir_name(station: int) -> str:
    """Folder of a station: ``mingo0<S>``, as the station names of the network file."""
    return f"mingo{station:02d}"


def day_path(out_dir: Path, station: int, day: date, suffix: str = ".csv") -> Path:
    """``OUT/mingo0<S>/YYYY/MM/unified_YYYY_MM_DD<suffix>``."""
    return (
        out_dir
        / station_dir_name(station)
        / f"{day:%Y}"
        / f"{day:%m}"
        / f"unified_{day:%Y_%m_%d}{suffix}"
    )


def rows_to_frame(rows: Iterable[Any]) -> pd.DataFrame:
    """Unified rows as a typed frame with the file columns (quality flags joined by ``;``)."""
    records: list[dict[str, Any]] = []
    for row in rows:
        record = {name: getattr(row, name) for name in COLUMNS}
        record["quality"] = QUALITY_SEPARATOR.join(record["quality"])
        records.append(record)
    return _typed(pd.DataFrame.from_records(records, columns=list(COLUMNS)))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype(_DTYPES)
    frame["time"] = pd.to_datetime(frame["time"], utc=True).astype("datetime64[s, UTC]")
    frame["quality"] = frame["quality"].fillna("").astype(str).astype(object)
    return frame


def merge_rows(existing: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """Rows of both, one per minute: the highest revision, and on a tie the one in ``new``."""
    frame = new if existing is None or existing.empty else pd.concat([existing, new])
    frame = frame.reset_index(drop=True)
    frame = frame.sort_values(["time", "revision"], kind="stable")
    frame = frame.drop_duplicates("time", keep="last")
    return frame.reset_index(drop=True)


def read_csv(path: Path) -> pd.DataFrame:
    """A daily CSV written by :func:`write_csv`, with the contract's types."""
    frame = pd.read_csv(path, dtype={"quality": "object"}, keep_default_na=False, na_values=[""])
    return _typed(frame.reindex(columns=list(COLUMNS)))


def read_day(path_csv: Path) -> pd.DataFrame | None:
    """A day's rows from its Parquet file if present (faster, typed), else its CSV, else None."""
    parquet = path_csv.with_suffix(".parquet")
    if parquet.exists():
        return _typed(pd.read_parquet(parquet).reindex(columns=list(COLUMNS)))
    if path_csv.exists():
        return read_csv(path_csv)
    return None


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        tmp.chmod(0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write a day's CSV atomically (times ISO 8601 with Z, missing values empty)."""
    out = frame.copy()
    out["time"] = out["time"].dt.strftime(_TIME_FORMAT)
    _atomic(path, lambda tmp: out.to_csv(tmp, index=False, na_rep=""))


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write a day's Parquet file atomically (zstd)."""
    _atomic(path, lambda tmp: frame.to_parquet(tmp, index=False, compression="zstd"))


class DailyFiles:
    """The sink's file store: merges batches of unified rows into the daily files.

    Parameters
    ----------
    out_dir : Path
        Root folder of the files.
    parquet : bool
        Also write the Parquet twin of each CSV.
    """

    def __init__(self, out_dir: Path, *, parquet: bool = True) -> None:
        self.out_dir = out_dir
        self.parquet = parquet

    def write(self, rows: Sequence[Any]) -> list[Path]:
        """Merge the rows into their days' files; returns the CSV paths rewritten.

        Raises
        ------
        FilesWriteError
            A file could not be written (disk full, permissions); the message names the output
            folder, the file and the reason. Files already rewritten keep complete content.
        """
        by_day: dict[tuple[int, date], list[Any]] = defaultdict(list)
        for row in rows:
            time = row.time.astimezone(UTC)
            by_day[(row.station, time.date())].append(row)
        written = []
        for (station, day), day_rows in sorted(by_day.items(), key=lambda item: item[0]):
            path = day_path(self.out_dir, station, day)
            merged = merge_rows(read_day(path), rows_to_frame(day_rows))
            writes = [(write_parquet, path.with_suffix(".parquet"))] if self.parquet else []
            for write, target in [*writes, (write_csv, path)]:
                try:
                    write(merged, target)
                except OSError as exc:
                    raise FilesWriteError(self.out_dir, target, exc) from exc
            written.append(path)
        return written


class FilesWriteError(OSError):
    """A daily file could not be written; names the output folder, the file and why."""

    def __init__(self, out_dir: Path, path: Path, cause: OSError) -> None:
        reason = "no space left on device (the disk is full)"
        if cause.errno != errno.ENOSPC:
            reason = cause.strerror or str(cause)
        super().__init__(
            cause.errno,
            f"cannot write {path.relative_to(out_dir)} in the output folder {out_dir}: {reason}",
        )


def stations_on_disk(out_dir: Path) -> list[int]:
    """Station ids that have a folder of files."""
    found = []
    if out_dir.is_dir():
        for child in out_dir.iterdir():
            name = child.name
            if child.is_dir() and name.startswith("mingo") and name[5:].isdigit():
                found.append(int(name[5:]))
    return sorted(found)


def read_range(out_dir: Path, station: int, start: datetime, end: datetime) -> pd.DataFrame:
    """Rows of one station with ``start <= time < end`` from the daily files (maybe empty)."""
    frames = []
    day = start.astimezone(UTC).date()
    last = (end.astimezone(UTC) - timedelta(microseconds=1)).date()
    while day <= last:
        frame = read_day(day_path(out_dir, station, day))
        if frame is not None:
            frames.append(frame)
        day += timedelta(days=1)
    if not frames:
        return _typed(pd.DataFrame(columns=list(COLUMNS)))
    frame = pd.concat(frames, ignore_index=True)
    mask = (frame["time"] >= pd.Timestamp(start)) & (frame["time"] < pd.Timestamp(end))
    return frame.loc[mask].reset_index(drop=True)
