"""Derived hourly quantities at a station from the combined ERA5 table (DOMAIN.md §6).

Input: the wide table of :func:`services.reanalysis.points.combine` (ERA5 short names in ERA5
units: ``t2m`` [K], ``sp`` [Pa], ``t_<L>hPa`` [K], ``z_<L>hPa`` [m² s⁻²]). Output: one row per
hour with the fields of the ``Era5Hour`` contract:

- ``temp_ground_c`` = t2m - 273.15 [°C]; ``surface_pressure_hpa`` = sp / 100 [hPa];
- ``temp_100hpa_c`` = t at 100 hPa - 273.15 [°C]; ``height_100hpa_m`` = z at 100 hPa / g0 [m];
- ``t_mw_k`` and ``t_eff_k`` [K] from :mod:`services.common.atmosphere` (the production-profile
  weight documented and cited there), over the pressure levels in the files, bounded by the
  surface pressure. They are computed only for a *complete profile*: at least
  :data:`MIN_PROFILE_LEVELS` levels reaching up to :data:`MAX_TOP_LEVEL_HPA` or higher; otherwise
  they are missing (NaN), since a truncated column would bias them.

Hours missing any of t2m, sp, t and z at 100 hPa are left out.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from services.common.atmosphere import (
    G0_M_S2,
    effective_temperature,
    mass_weighted_temperature,
)
from services.reanalysis.points import level_column

#: 0 °C. [K]
ZERO_CELSIUS_K = 273.15
#: A profile needs at least this many pressure levels for T_MW and T_eff.
MIN_PROFILE_LEVELS = 10
#: ... and its highest level at this pressure or lower. [hPa]
MAX_TOP_LEVEL_HPA = 10.0

#: Columns of the derived table, in order.
DERIVED_COLUMNS = (
    "time",
    "temp_ground_c",
    "surface_pressure_hpa",
    "temp_100hpa_c",
    "height_100hpa_m",
    "t_mw_k",
    "t_eff_k",
    "expver",
    "source_file",
)

_LEVEL_COLUMN = re.compile(r"^t_(?P<level>[0-9.]+)hPa$")


def profile_levels_hpa(table: pd.DataFrame) -> np.ndarray:
    """Pressure levels with a temperature column (``t_<L>hPa``), descending. [hPa]"""
    levels = [float(m["level"]) for c in table.columns if (m := _LEVEL_COLUMN.match(str(c)))]
    return np.array(sorted(levels, reverse=True), dtype=np.float64)


def derive_hours(table: pd.DataFrame) -> pd.DataFrame:
    """Derived quantities per hour from a combined ERA5 table.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of ``combine`` (``time``, ERA5 columns in ERA5 units, ``expver``,
        ``source_file``).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`DERIVED_COLUMNS`: temperatures [°C], pressure [hPa], height [m],
        T_MW and T_eff [K] (NaN without a complete profile), ``expver``, ``source_file``.
    """
    t100, z100 = level_column("t", 100.0), level_column("z", 100.0)
    needed = ["t2m", "sp", t100, z100]
    if table.empty or any(c not in table.columns for c in needed):
        return pd.DataFrame(columns=DERIVED_COLUMNS)
    rows = table.dropna(subset=needed).reset_index(drop=True)
    surface_hpa = rows["sp"].to_numpy(np.float64) / 100.0
    out = pd.DataFrame(
        {
            "time": rows["time"],
            "temp_ground_c": rows["t2m"].to_numpy(np.float64) - ZERO_CELSIUS_K,
            "surface_pressure_hpa": surface_hpa,
            "temp_100hpa_c": rows[t100].to_numpy(np.float64) - ZERO_CELSIUS_K,
            "height_100hpa_m": rows[z100].to_numpy(np.float64) / G0_M_S2,
        }
    )
    levels = profile_levels_hpa(rows)
    t_mw = np.full(len(rows), np.nan)
    t_eff = np.full(len(rows), np.nan)
    if levels.size >= MIN_PROFILE_LEVELS and levels.min() <= MAX_TOP_LEVEL_HPA and len(rows):
        temps = rows[[level_column("t", lev) for lev in levels]].to_numpy(np.float64)
        t_mw = mass_weighted_temperature(levels, temps, surface_hpa)
        t_eff = effective_temperature(levels, temps, surface_hpa)
    out["t_mw_k"] = t_mw
    out["t_eff_k"] = t_eff
    out["expver"] = rows["expver"].to_numpy()
    out["source_file"] = rows["source_file"].to_numpy()
    return out
