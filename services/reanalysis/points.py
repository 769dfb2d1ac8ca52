"""Values at a station: bilinear interpolation on the ERA5 grid and the per-station tables.

The grids come normalised from :mod:`services.reanalysis.decode` (latitude and longitude
ascending, longitude in [-180, 180)). A global grid (longitudes covering 360°) wraps around the
date line; a regional grid must contain the point.

Columns are named by ERA5 short name, with the pressure level for level variables: ``t2m``,
``sp``, ``t_850hPa``, ``z_500hPa``; values stay in the file's units.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import xarray as xr

from services.reanalysis.decode import EXPVER_FINAL

#: Columns of the long per-source table of :func:`point_values`.
LONG_COLUMNS = ("time", "column", "value", "expver", "source_file")


def _weights(grid: np.ndarray, x: float, periodic: bool, name: str) -> tuple[int, int, float]:
    """Neighbours ``i0, i1`` and the weight ``w`` of ``i1`` for ``x`` on an ascending grid."""
    n = grid.size
    if n == 1:
        if np.isclose(x, grid[0]):
            return 0, 0, 0.0
        raise ValueError(f"{name} {x} is not the grid's only {name} {grid[0]}")
    if periodic and not grid[0] <= x <= grid[-1]:
        gap = (grid[0] - grid[-1]) % 360.0
        return n - 1, 0, float(((x - grid[-1]) % 360.0) / gap)
    if not grid[0] <= x <= grid[-1]:
        raise ValueError(f"{name} {x} is outside the grid [{grid[0]}, {grid[-1]}]")
    i = int(np.clip(np.searchsorted(grid, x, side="right") - 1, 0, n - 2))
    return i, i + 1, float((x - grid[i]) / (grid[i + 1] - grid[i]))


def interpolate_point(ds: xr.Dataset, latitude: float, longitude: float) -> xr.Dataset:
    """Bilinear interpolation of every field of a normalised dataset at one point.

    Parameters
    ----------
    ds : xarray.Dataset
        Normalised dataset (``open_era5``), dimensions ``(..., latitude, longitude)``.
    latitude : float
        Latitude of the point. [deg]
    longitude : float
        Longitude of the point, -180..180 or 0..360. [deg]

    Returns
    -------
    xarray.Dataset
        The fields without the ``latitude`` and ``longitude`` dimensions, as float64.

    Raises
    ------
    ValueError
        If the point lies outside a regional grid.
    """
    lats = ds["latitude"].values.astype(np.float64)
    lons = ds["longitude"].values.astype(np.float64)
    lon = ((longitude + 180.0) % 360.0) - 180.0
    step = np.median(np.diff(lons)) if lons.size > 1 else 360.0
    periodic = lons.size > 1 and lons[-1] - lons[0] + step >= 360.0 - 1e-6
    i0, i1, a = _weights(lats, latitude, False, "latitude")
    j0, j1, b = _weights(lons, lon, periodic, "longitude")
    fields = ds.astype(np.float64)

    def corner(i: int, j: int) -> xr.Dataset:
        return fields.isel(latitude=i, longitude=j, drop=True)

    return (
        (1 - a) * (1 - b) * corner(i0, j0)
        + (1 - a) * b * corner(i0, j1)
        + a * (1 - b) * corner(i1, j0)
        + a * b * corner(i1, j1)
    )


def level_column(variable: str, level: float) -> str:
    """Column name of a variable at a pressure level, ``t_850hPa``."""
    return f"{variable}_{level:g}hPa"


def point_values(ds: xr.Dataset, latitude: float, longitude: float) -> pd.DataFrame:
    """Long table of the interpolated values of one dataset: one row per time and column.

    Parameters
    ----------
    ds : xarray.Dataset
        Normalised dataset.
    latitude, longitude : float
        The point. [deg]

    Returns
    -------
    pandas.DataFrame
        Columns ``time`` (UTC), ``column`` (``t2m``, ``t_850hPa``...), ``value`` (file units),
        ``expver`` and ``source_file``.
    """
    point = interpolate_point(ds, latitude, longitude)
    times = pd.to_datetime(point["time"].values).tz_localize("UTC")
    expver = np.asarray(point["expver"].values, dtype=object)
    frames = []
    for name, field in point.data_vars.items():
        if "level" in field.dims:
            field = field.transpose("time", "level")
            columns = [level_column(str(name), lev) for lev in point["level"].values]
        else:
            field = field.transpose("time")
            columns = [str(name)]
        values = np.asarray(field.values, dtype=np.float64).reshape(times.size, len(columns))
        for k, column in enumerate(columns):
            frames.append(
                pd.DataFrame(
                    {
                        "time": times,
                        "column": column,
                        "value": values[:, k],
                        "expver": expver,
                        "source_file": ds.attrs["source_file"],
                    }
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=LONG_COLUMNS)


def combine(long_tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Merge long tables of several files into one wide table, one row per hour.

    Where several files hold the same column at the same hour, final ERA5 (expver 0001) wins
    over ERA5T, then the file whose name sorts last, so the result does not depend on the order
    of the inputs. NaN values never win.

    Returns
    -------
    pandas.DataFrame
        ``time`` (UTC, ascending), one column per variable and level (sorted by name), then
        ``expver`` (``0005`` if any value of the hour came from ERA5T, else ``0001``) and
        ``source_file`` (names of the files used, sorted, comma-separated).
    """
    tables = [t for t in long_tables if not t.empty]
    if not tables:
        return pd.DataFrame(columns=["time", "expver", "source_file"])
    long = pd.concat(tables, ignore_index=True).dropna(subset=["value"])
    long["_final"] = long["expver"] == EXPVER_FINAL
    long = long.sort_values(
        ["time", "column", "_final", "source_file"], ascending=[True, True, False, False]
    ).drop_duplicates(["time", "column"], keep="first")
    wide = long.pivot(index="time", columns="column", values="value")
    wide = wide[sorted(wide.columns)]
    by_time = long.groupby("time")
    wide["expver"] = by_time["expver"].max()
    wide["source_file"] = by_time["source_file"].agg(lambda s: ",".join(sorted(set(s))))
    wide.columns.name = None
    return wide.reset_index()


def point_table(datasets: Iterable[xr.Dataset], latitude: float, longitude: float) -> pd.DataFrame:
    """Wide table of the values at a point, the output of ``mingo era5 point``.

    Returns
    -------
    pandas.DataFrame
        ``time`` and one column per variable and level, in the file's units.
    """
    wide = combine(point_values(ds, latitude, longitude) for ds in datasets)
    return wide.drop(columns=["expver", "source_file"])
