"""ERA5 NetCDF files matching the simulated weather, in the layout of the new CDS (since 2024).

Per station and day two files, as the reference system requests them:
``reanalysis-era5-single-levels_YYYY-MM-DD.nc`` (``t2m`` [K], ``sp`` [Pa]) and
``reanalysis-era5-pressure-levels_YYYY-MM-DD.nc`` (``t`` [K], ``z`` [m² s⁻²] on the 37 levels).
Dimensions ``valid_time`` (hourly, on the hour), ``pressure_level`` [hPa], ``latitude``
(descending), ``longitude`` (-180..180); coordinates ``number`` (scalar 0) and ``expver``
('0001' per valid time); CF attributes as ERA5 has them; float32 data, written with netCDF4.

The grid is 4 × 4 points at 0.25° whose cell containing the station is the middle one. Each field
varies *linearly* in latitude and longitude around its value at the station, so bilinear
interpolation at the station's coordinates returns the truth (to float32 rounding: about 1e-5
relative, e.g. < 0.01 Pa of ``sp`` and < 3e-5 K of ``t``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import xarray as xr

from simulator.seeds import Stream, rng_for
from simulator.weather import WeatherHourly

GRID_STEP_DEG = 0.25
SINGLE_LEVELS = "reanalysis-era5-single-levels"
PRESSURE_LEVELS = "reanalysis-era5-pressure-levels"

_ATTRS = {
    "t2m": {
        "long_name": "2 metre temperature",
        "units": "K",
        "standard_name": "unknown",
        "GRIB_paramId": 167,
        "GRIB_shortName": "2t",
    },
    "sp": {
        "long_name": "Surface pressure",
        "units": "Pa",
        "standard_name": "surface_air_pressure",
        "GRIB_paramId": 134,
        "GRIB_shortName": "sp",
    },
    "t": {
        "long_name": "Temperature",
        "units": "K",
        "standard_name": "air_temperature",
        "GRIB_paramId": 130,
        "GRIB_shortName": "t",
    },
    "z": {
        "long_name": "Geopotential",
        "units": "m**2 s**-2",
        "standard_name": "geopotential",
        "GRIB_paramId": 129,
        "GRIB_shortName": "z",
    },
}


def era5_filename(dataset: str, day: str) -> str:
    """``<dataset>_YYYY-MM-DD.nc``."""
    return f"{dataset}_{day}.nc"


def station_grid(latitude: float, longitude: float) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes (descending) and longitudes (ascending) of the 4 × 4 grid around a station.

    [deg]
    """
    lat0 = np.floor(latitude / GRID_STEP_DEG) * GRID_STEP_DEG
    lon0 = np.floor(longitude / GRID_STEP_DEG) * GRID_STEP_DEG
    lats = lat0 + GRID_STEP_DEG * np.array([2.0, 1.0, 0.0, -1.0])
    lons = lon0 + GRID_STEP_DEG * np.array([-1.0, 0.0, 1.0, 2.0])
    return lats, ((lons + 180.0) % 360.0) - 180.0


def bilinear(field: xr.DataArray, latitude: float, longitude: float) -> np.ndarray:
    """Bilinear interpolation of a ``(..., latitude, longitude)`` field at a point (numpy only).

    Returns
    -------
    numpy.ndarray
        The field at the point, shape of the leading dimensions.
    """
    lats = field["latitude"].values.astype(np.float64)
    lons = field["longitude"].values.astype(np.float64)
    values = np.asarray(field.transpose(..., "latitude", "longitude").values, dtype=np.float64)
    ilat = np.argsort(lats)
    lats, values = lats[ilat], values[..., ilat, :]
    i = int(np.clip(np.searchsorted(lats, latitude) - 1, 0, lats.size - 2))
    j = int(np.clip(np.searchsorted(lons, longitude) - 1, 0, lons.size - 2))
    a = (latitude - lats[i]) / (lats[i + 1] - lats[i])
    b = (longitude - lons[j]) / (lons[j + 1] - lons[j])
    return (
        (1 - a) * (1 - b) * values[..., i, j]
        + (1 - a) * b * values[..., i, j + 1]
        + a * (1 - b) * values[..., i + 1, j]
        + a * b * values[..., i + 1, j + 1]
    )


def _coords(times: np.ndarray, lats: np.ndarray, lons: np.ndarray) -> dict[str, xr.Variable]:
    return {
        "number": xr.Variable(
            (),
            np.int64(0),
            {
                "long_name": "ensemble member numerical id",
                "units": "1",
                "standard_name": "realization",
            },
        ),
        "valid_time": xr.Variable(
            ("valid_time",),
            times.astype("datetime64[ns]"),
            {"long_name": "time", "standard_name": "time"},
        ),
        "latitude": xr.Variable(
            ("latitude",),
            lats,
            {
                "units": "degrees_north",
                "standard_name": "latitude",
                "long_name": "latitude",
                "stored_direction": "decreasing",
            },
        ),
        "longitude": xr.Variable(
            ("longitude",),
            lons,
            {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"},
        ),
        "expver": xr.Variable(
            ("valid_time",),
            np.array(["0001"] * times.size, dtype=object),
            {"long_name": "Experiment version"},
        ),
    }


def _global_attrs(dataset: str) -> dict[str, str]:
    return {
        "GRIB_centre": "ecmf",
        "GRIB_centreDescription": "European Centre for Medium-Range Weather Forecasts",
        "GRIB_subCentre": "0",
        "Conventions": "CF-1.7",
        "institution": "European Centre for Medium-Range Weather Forecasts",
        "history": f"simulated {dataset} for mingo-dataflow (not real ERA5 data)",
    }


def era5_datasets(
    weather: WeatherHourly, latitude: float, longitude: float, seed: int, station: int, day_s: int
) -> tuple[xr.Dataset, xr.Dataset]:
    """The single-level and pressure-level datasets of one UTC day at a station.

    Parameters
    ----------
    weather : WeatherHourly
        Hourly truth at the station, covering the day.
    latitude, longitude : float
        Station coordinates. [deg]
    seed, station : int
        Select the (constant) spatial gradients of the fields.
    day_s : int
        UTC midnight. [s]
    """
    sel = (weather.time_s >= day_s) & (weather.time_s < day_s + 86400)
    if np.count_nonzero(sel) != 24:
        raise ValueError("the hourly weather must cover the whole day")
    times = weather.time_s[sel].astype("datetime64[s]")
    lats, lons = station_grid(latitude, longitude)
    dlat = (lats - latitude)[:, None]
    dlon = (lons - longitude)[None, :]
    rng = rng_for(seed, station, Stream.ERA5)
    g_sp = rng.uniform(-150.0, 150.0, 2)  # Pa per degree
    g_t2m = rng.uniform(-0.8, 0.8, 2)  # K per degree
    g_t = rng.uniform(-0.5, 0.5, (2, weather.levels_hpa.size))
    g_z = rng.uniform(-300.0, 300.0, (2, weather.levels_hpa.size))  # m2 s-2 per degree

    def spread(values: np.ndarray, grad_lat: np.ndarray, grad_lon: np.ndarray) -> np.ndarray:
        # values [...]; gradients broadcast against values' trailing dims; out [..., lat, lon]
        v = values[..., None, None]
        return (
            v
            + np.asarray(grad_lat)[..., None, None] * dlat
            + np.asarray(grad_lon)[..., None, None] * dlon
        ).astype(np.float32)

    coords = _coords(times, lats, lons)
    sp = spread(weather.surface_pressure_hpa[sel] * 100.0, g_sp[0], g_sp[1])
    t2m = spread(weather.t2m_k[sel], g_t2m[0], g_t2m[1])
    single = xr.Dataset(
        {
            "t2m": (("valid_time", "latitude", "longitude"), t2m, _ATTRS["t2m"]),
            "sp": (("valid_time", "latitude", "longitude"), sp, _ATTRS["sp"]),
        },
        coords=coords,
        attrs=_global_attrs(SINGLE_LEVELS),
    )
    levels = weather.levels_hpa.astype(np.float64)
    t = spread(weather.t_levels_k[sel], g_t[0], g_t[1])
    z = spread(weather.z_levels_m2s2[sel], g_z[0], g_z[1])
    plev = {
        **coords,
        "pressure_level": xr.Variable(
            ("pressure_level",),
            levels,
            {
                "units": "hPa",
                "long_name": "pressure",
                "standard_name": "air_pressure",
                "stored_direction": "decreasing",
                "positive": "down",
            },
        ),
    }
    dims = ("valid_time", "pressure_level", "latitude", "longitude")
    pressure = xr.Dataset(
        {"t": (dims, t, _ATTRS["t"]), "z": (dims, z, _ATTRS["z"])},
        coords=plev,
        attrs=_global_attrs(PRESSURE_LEVELS),
    )
    return single, pressure


def write_era5_day(
    directory: Path,
    weather: WeatherHourly,
    latitude: float,
    longitude: float,
    seed: int,
    station: int,
    day_s: int,
) -> list[Path]:
    """Write both files of a day into ``directory``; return their paths."""
    single, pressure = era5_datasets(weather, latitude, longitude, seed, station, day_s)
    day = datetime.fromtimestamp(day_s, UTC).strftime("%Y-%m-%d")
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for dataset, ds in ((SINGLE_LEVELS, single), (PRESSURE_LEVELS, pressure)):
        path = directory / era5_filename(dataset, day)
        tmp = path.with_name(f".{path.name}.part")
        encoding = {
            name: {"dtype": "float32", "_FillValue": np.float32(np.nan)} for name in ds.data_vars
        }
        encoding["valid_time"] = {
            "units": "seconds since 1970-01-01",
            "calendar": "proleptic_gregorian",
            "dtype": "int64",
        }
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
        tmp.replace(path)
        paths.append(path)
    return paths
