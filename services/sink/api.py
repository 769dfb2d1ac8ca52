"""Read-only HTTP API over the sink's daily files (FastAPI, OpenAPI at ``/docs``).

``/api/v1/unified`` answers one station and a bounded time range, as JSON (an object whose
``rows`` is an array of flat records, the shape Grafana's Infinity/JSON data sources and scripts
read) or as CSV in the files' own columns. Errors are 4xx with a ``detail`` saying what is wrong.
"""

from __future__ import annotations

import io
import logging
import math
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import Response

from services.common.stations import Network
from services.sink.files import COLUMNS, read_range, stations_on_disk
from services.sink.settings import ApiSettings

log = logging.getLogger(__name__)

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: Columns every answer has, whatever ``columns`` asks for.
KEY_COLUMNS = ("station", "time")


class OutputFormat(StrEnum):
    """Representation of ``/api/v1/unified``."""

    json = "json"
    csv = "csv"


def _utc(value: datetime) -> datetime:
    """Naive times are taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _selected_columns(columns: str | None) -> list[str]:
    if not columns:
        return list(COLUMNS)
    wanted = [c.strip() for c in columns.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in COLUMNS]
    if unknown:
        raise HTTPException(400, f"unknown columns {unknown}; known: {', '.join(COLUMNS)}")
    return [*KEY_COLUMNS, *(c for c in wanted if c not in KEY_COLUMNS)]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = frame.copy()
    out["time"] = out["time"].dt.strftime(_TIME_FORMAT)
    return [
        {
            str(key): None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in record.items()
        }
        for record in out.to_dict(orient="records")
    ]


def create_app(out_dir: Path, network: Network | None = None, max_days: float = 31.0) -> FastAPI:
    """The API application.

    Parameters
    ----------
    out_dir : Path
        Root folder of the sink's daily files.
    network : Network, optional
        Stations to describe; stations with files but not in the network are listed by id.
    max_days : float
        Longest time range one request may ask for. [d]
    """
    app = FastAPI(
        title="mingo-dataflow API",
        version="1",
        description="The unified per-station-minute table of the miniTRASGO network (read-only).",
    )
    known = {s.id: s for s in network.stations} if network else {}
    max_range = timedelta(days=max_days)

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness, and whether the file store is there."""
        return {"status": "ok", "files": out_dir.is_dir()}

    @app.get("/api/v1/stations")
    def stations() -> list[dict[str, Any]]:
        """Every station of the network and every station with files."""
        with_files = set(stations_on_disk(out_dir))
        result = []
        for station_id in sorted(set(known) | with_files):
            station = known.get(station_id)
            result.append(
                {
                    "id": station_id,
                    "name": station.name if station else f"mingo{station_id:02d}",
                    "city": station.city if station else "",
                    "latitude": station.latitude if station else None,
                    "longitude": station.longitude if station else None,
                    "altitude_m": station.altitude_m if station else None,
                    "has_data": station_id in with_files,
                }
            )
        return result

    @app.get("/api/v1/unified", response_model=None)
    def unified(
        station: Annotated[int, Query(ge=0, le=9, description="Station id.")],
        start: Annotated[datetime, Query(description="First minute, ISO 8601 (naive = UTC).")],
        end: Annotated[datetime, Query(description="End of the range (exclusive), ISO 8601.")],
        columns: Annotated[
            str | None, Query(description="Comma-separated columns; default all.")
        ] = None,
        format: Annotated[OutputFormat, Query(description="json or csv.")] = OutputFormat.json,
    ) -> Response | dict[str, Any]:
        """Rows of one station with ``start <= time < end``."""
        start_utc, end_utc = _utc(start), _utc(end)
        if end_utc <= start_utc:
            raise HTTPException(400, "end must be after start")
        if end_utc - start_utc > max_range:
            raise HTTPException(400, f"time range longer than {max_days:g} days; split it")
        if known and station not in known and station not in stations_on_disk(out_dir):
            raise HTTPException(404, f"unknown station {station}; known: {sorted(known)}")
        selected = _selected_columns(columns)
        frame = read_range(out_dir, station, start_utc, end_utc)[selected]
        if format is OutputFormat.csv:
            buffer = io.StringIO()
            out = frame.copy()
            out["time"] = out["time"].dt.strftime(_TIME_FORMAT)
            out.to_csv(buffer, index=False, na_rep="")
            return Response(buffer.getvalue(), media_type="text/csv")
        return {
            "station": station,
            "start": start_utc.strftime(_TIME_FORMAT),
            "end": end_utc.strftime(_TIME_FORMAT),
            "columns": selected,
            "count": len(frame),
            "rows": _records(frame),
        }

    return app


def serve(settings: ApiSettings) -> None:
    """Run the API with uvicorn until SIGTERM/SIGINT (uvicorn stops gracefully on both)."""
    import uvicorn

    from services.common.logging import configure_logging
    from services.common.stations import NetworkConfigError, load_network

    configure_logging(settings.log_level, settings.log_format, settings.secret_values())
    try:
        network: Network | None = load_network(settings.network_file)
    except NetworkConfigError as exc:
        log.warning("serving without the network file", extra={"error": str(exc)})
        network = None
    app = create_app(settings.sink_out_dir, network, settings.api_max_days)
    log.info("api listening", extra={"host": settings.api_host, "port": settings.api_port})
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_config=None)


if __name__ == "__main__":
    serve(ApiSettings())
