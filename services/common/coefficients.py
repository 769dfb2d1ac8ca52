"""Versioned coefficient records (``schemas.models.Coefficients``) on disk, and applying them.

Records live in ``DIR/mingo0<S>/coefficients_v<NNNN>.json`` (one file per version, never
rewritten); ``mingo fit --write`` makes them (``services/fit``), ``mingo process --coefficients``
applies a station's newest: it replaces the configured β (any method) and α_T (``teff`` method
only, since the corrections use T_eff). The streaming unify applies the newest of the folder's
(``MINGO_UNIFY_COEFFICIENTS_DIR``) and the records on ``mingo.coefficients.v1``
(``mingo fit --write --publish``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from schemas.models import Coefficients
from services.common.stations import AtmosphereCoefficients, Station

_NAME = re.compile(r"^coefficients_v(\d{4,})\.json$")


def station_dir(root: Path, station: int) -> Path:
    """Folder of a station's records."""
    return root / f"mingo0{station}"


def versions(root: Path, station: int) -> list[int]:
    """Versions of a station's records on disk, ascending."""
    folder = station_dir(root, station)
    if not folder.is_dir():
        return []
    found = (_NAME.match(p.name) for p in folder.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def next_version(root: Path, station: int) -> int:
    """The version a new record of the station gets."""
    return (versions(root, station) or [0])[-1] + 1


def write_record(root: Path, record: Coefficients) -> Path:
    """Store a record; refuses to overwrite an existing version (FileExistsError)."""
    folder = station_dir(root, record.station)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"coefficients_v{record.version:04d}.json"
    with path.open("x", encoding="utf-8") as handle:  # "x": a version is never rewritten
        handle.write(json.dumps(record.model_dump(mode="json"), indent=2) + "\n")
    return path


def latest_record(root: Path, station: int) -> Coefficients | None:
    """The station's newest record, or None.

    Raises
    ------
    ValueError
        Naming the file when it is not a valid record.
    """
    found = versions(root, station)
    if not found:
        return None
    path = station_dir(root, station) / f"coefficients_v{found[-1]:04d}.json"
    try:
        return Coefficients.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not a valid coefficients record: {exc}") from None


def apply_record(station: Station, record: Coefficients) -> Station:
    """The station with the record's total-rate coefficients in its ``atmosphere``."""
    if record.station != station.id:
        raise ValueError(f"record of station {record.station} applied to station {station.id}")
    return station.model_copy(update={"atmosphere": atmosphere_with(station.atmosphere, record)})


def atmosphere_with(
    atmosphere: AtmosphereCoefficients, record: Coefficients
) -> AtmosphereCoefficients:
    """``atmosphere`` with the record's total-rate β and P0, and α_T and T_eff,ref when the
    record's method is ``teff`` (the corrections use T_eff)."""
    total = record.fits[0]
    update: dict[str, float] = {
        "beta_pct_per_hpa": total.beta_pct_per_hpa,
        "beta_err_pct_per_hpa": total.beta_err_pct_per_hpa,
        "p0_hpa": record.p0_hpa,
    }
    if (
        record.method == "teff"
        and total.alpha_t_pct_per_k is not None
        and total.alpha_t_err_pct_per_k is not None
        and record.teff_ref_k is not None
    ):
        update |= {
            "alpha_t_pct_per_k": total.alpha_t_pct_per_k,
            "alpha_t_err_pct_per_k": total.alpha_t_err_pct_per_k,
            "teff_ref_k": record.teff_ref_k,
        }
    return atmosphere.model_copy(update=update)
