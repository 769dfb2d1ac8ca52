"""Where ``mingo fit`` reads the unified table: the sink's daily files, or InfluxDB (v1 query)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from services.alerts.detectors import DETECTOR_COLUMNS
from services.fit.model import RATE_COLUMNS
from services.sink.files import read_range
from services.sink.influx import InfluxTarget, v1_credentials
from services.sink.lineprotocol import UNIFIED_MEASUREMENT

#: Unified columns a fit reads (with those of the anomaly detectors, for --exclude-alerts).
FIT_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(
        (
            "live_s",
            *(f"rate_{c}_hz" for c in RATE_COLUMNS),
            "pressure_ext",
            "era5_surface_pressure_hpa",
            "era5_t_eff_k",
            "era5_height_100hpa_m",
            "era5_temp_ground_c",
            *DETECTOR_COLUMNS,
        )
    )
)


def read_files(out_dir: Path, station: int, start: datetime, end: datetime) -> pd.DataFrame:
    """Unified rows ``start <= time < end`` from ``OUT/mingo0<S>/YYYY/MM/unified_*.csv``."""
    return read_range(out_dir, station, start, end)


def read_influx(target: InfluxTarget, station: int, start: datetime, end: datetime) -> pd.DataFrame:
    """Unified rows ``start <= time < end`` of a station from InfluxDB (``/query``, InfluxQL).

    Raises
    ------
    RuntimeError
        When InfluxDB answers with an error (its message is kept).
    """
    fields = ", ".join(f'"{c}"' for c in FIT_COLUMNS)
    query = (
        f'SELECT {fields} FROM "{UNIFIED_MEASUREMENT}" WHERE "station" = \'{int(station)}\' '
        f"AND time >= '{start.isoformat()}' AND time < '{end.isoformat()}'"
    )
    headers, auth = v1_credentials(target)
    with httpx.Client(
        base_url=target.url, headers=headers, auth=auth, timeout=60.0, trust_env=False
    ) as client:
        response = client.get("/query", params={"db": target.database, "q": query, "epoch": "s"})
    body = response.json() if response.content else {}
    if response.status_code != 200 or "error" in body:
        raise RuntimeError(f"InfluxDB query failed ({response.status_code}): {body}")
    series = [s for r in body.get("results", []) for s in r.get("series", [])]
    if not series:
        return pd.DataFrame(columns=["time", *FIT_COLUMNS])
    frame = pd.DataFrame(series[0]["values"], columns=series[0]["columns"])
    frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
    for c in FIT_COLUMNS:
        frame[c] = frame[c].astype("float64") if c in frame else np.nan
    return frame
