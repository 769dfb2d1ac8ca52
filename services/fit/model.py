"""Fits of the atmospheric coefficients on hourly aggregates of the unified table (pure numpy).

Model (the one :mod:`services.unify.corrections` inverts and the simulator injects, DOMAIN.md §6)::

    ln I_h = ln I0 + β/100 (P_h - P0) + ln(1 + Σ_k a_k/100 (x_k,h - x_k,ref))

with the temperature terms

- ``pressure``: none (β only);
- ``teff``: one term, α_T [%/K] on T_eff [K] about ``T_eff,ref``;
- ``duperier``: α_H [%/m] on the 100 hPa height [m] and α_T [%/K] on the ground temperature [K],
  about their means over the fitted hours.

β and the temperature coefficients are fitted together (weighted least squares, Gauss-Newton on
the exact model, which is linear in β and ln I0): fitting them one after the other would leak the
part of the temperature effect that correlates with pressure into β. Weights are Poisson: an
hour's ``ln I`` has variance 1/N with N its counts. Standard errors come from the covariance of
the fit with these weights (not rescaled by χ²/ndf: χ²/ndf then says whether the hours scatter
more than Poisson statistics allow).

Hours: counts are ``Σ rate · live_s`` over the hour's minutes (exactly the counts, since a minute's
rate is its counts over its live time), regressors are live-time weighted means. An hour enters
the fit when it has at least ``min_live_fraction`` of 3600 s live, all its regressors, and is not
inside an exclusion window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from schemas.columns import REGIONS
from schemas.models import Alert

Method = Literal["pressure", "teff", "duperier"]
METHODS: tuple[Method, ...] = ("pressure", "teff", "duperier")
#: Rate columns fitted: the total and each angular region.
RATE_COLUMNS: tuple[str, ...] = ("total", *REGIONS)
#: Kelvin of 0 °C.
_ZERO_C_K = 273.15


@dataclass(frozen=True)
class Term:
    """One temperature term of the model: its coefficient and the column it multiplies."""

    name: str  #: coefficient name, e.g. ``alpha_t``
    column: str  #: hourly regressor column
    unit: str  #: unit of the coefficient, e.g. ``%/K``


TERMS: dict[Method, tuple[Term, ...]] = {
    "pressure": (),
    "teff": (Term("alpha_t", "t_eff_k", "%/K"),),
    "duperier": (
        Term("alpha_h", "height_100hpa_m", "%/m"),
        Term("alpha_t", "temp_ground_k", "%/K"),
    ),
}


@dataclass(frozen=True)
class Window:
    """A time interval ``[start, end)`` kept out of the fit. [UTC]"""

    start: pd.Timestamp
    end: pd.Timestamp

    @classmethod
    def parse(cls, text: str) -> Window:
        """``START/END`` in ISO 8601 (dates or date-times, UTC when no zone is given)."""
        parts = text.split("/")
        if len(parts) != 2:
            raise ValueError(f"exclusion window {text!r}: expected START/END")
        start, end = (_utc(p) for p in parts)
        if end <= start:
            raise ValueError(f"exclusion window {text!r}: END must be after START")
        return cls(start, end)


def alert_windows(alerts: Sequence[Alert], end: pd.Timestamp) -> list[Window]:
    """Exclusion windows of alerts (an open alert runs to ``end``): the automatic selection of
    quiet periods from the detectors of :mod:`services.alerts.detectors`."""
    out = []
    for alert in alerts:
        stop = pd.Timestamp(alert.end) if alert.end is not None else end
        start = pd.Timestamp(alert.start)
        if stop > start:
            out.append(Window(start.tz_convert("UTC"), stop.tz_convert("UTC")))
    return out


def _utc(text: str) -> pd.Timestamp:
    stamp = pd.Timestamp(text.strip())
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def pressure_column(frame: pd.DataFrame) -> pd.Series:
    """The pressure unify uses: the station barometer when present, else ERA5 surface pressure.

    Returns
    -------
    pandas.Series
        Pressure per minute. [hPa]
    """
    missing = pd.Series(np.nan, frame.index)
    baro = frame.get("pressure_ext", missing)
    era5 = frame.get("era5_surface_pressure_hpa", missing)
    return baro.astype("float64").fillna(era5.astype("float64"))


def hourly(frame: pd.DataFrame, columns: Sequence[str] = RATE_COLUMNS) -> pd.DataFrame:
    """Hourly aggregates of unified minutes.

    Parameters
    ----------
    frame : pandas.DataFrame
        Unified-table rows of one station (``time``, ``live_s``, ``rate_<c>_hz``, pressure and
        ERA5 columns).
    columns : sequence of str
        Rate columns (``total``, region names) to aggregate.

    Returns
    -------
    pandas.DataFrame
        Indexed by hour start (UTC): ``live_s`` [s], ``counts_<c>`` [events], ``pressure_hpa``,
        ``t_eff_k``, ``height_100hpa_m``, ``temp_ground_k`` (live-time weighted means; NaN when
        no minute of the hour has the value).
    """
    live = frame["live_s"].astype("float64").to_numpy()
    data: dict[str, np.ndarray] = {"live_s": live}
    for c in columns:
        data[f"counts_{c}"] = frame[f"rate_{c}_hz"].astype("float64").to_numpy() * live
    missing = np.full(len(frame), np.nan)

    def column(name: str) -> np.ndarray:
        return frame[name].astype("float64").to_numpy() if name in frame else missing

    regressors = {
        "pressure_hpa": pressure_column(frame).to_numpy(),
        "t_eff_k": column("era5_t_eff_k"),
        "height_100hpa_m": column("era5_height_100hpa_m"),
        "temp_ground_k": column("era5_temp_ground_c") + _ZERO_C_K,
    }
    for name, values in regressors.items():
        present = np.isfinite(values) & (live > 0)
        data[f"_w_{name}"] = np.where(present, live, 0.0)
        data[f"_wx_{name}"] = np.where(present, values * live, 0.0)
    hours = pd.to_datetime(frame["time"], utc=True).dt.floor("h")
    sums = pd.DataFrame(data).groupby(hours.to_numpy()).sum()
    out = sums[["live_s", *(f"counts_{c}" for c in columns)]].copy()
    for name in regressors:
        weight = sums[f"_w_{name}"]
        out[name] = (sums[f"_wx_{name}"] / weight.where(weight > 0)).astype("float64")
    out.index = pd.DatetimeIndex(out.index, tz="UTC", name="hour")
    return out


@dataclass(frozen=True)
class FitResult:
    """The fit of one rate column.

    Attributes
    ----------
    column : str
        ``total`` or a region name.
    method : str
        ``pressure``, ``teff`` or ``duperier``.
    beta, beta_err : float
        Barometric coefficient and its standard error. [%/hPa]
    p0_hpa : float
        Reference pressure. [hPa]
    i0_hz, i0_err_hz : float
        Rate at the reference conditions and its error. [Hz]
    coefficients, errors : dict
        Temperature coefficients (``alpha_t`` [%/K], ``alpha_h`` [%/m]) and their errors.
    references : dict
        Reference value of each temperature regressor (``t_eff_k`` [K], ...).
    covariance : ndarray
        Covariance of (ln I0, β, temperature coefficients...). [1, %/hPa, ...]
    chi2, ndf : float, int
        χ² of the fit and its degrees of freedom.
    hours_used, hours_excluded : int
        Hours in the fit; hours of the span left out (windows, too little live time, missing
        regressors).
    """

    column: str
    method: str
    beta: float
    beta_err: float
    p0_hpa: float
    i0_hz: float
    i0_err_hz: float
    coefficients: dict[str, float]
    errors: dict[str, float]
    references: dict[str, float]
    covariance: np.ndarray = field(repr=False)
    chi2: float
    ndf: int
    hours_used: int
    hours_excluded: int

    @property
    def chi2_ndf(self) -> float:
        """χ² per degree of freedom (NaN without degrees of freedom)."""
        return self.chi2 / self.ndf if self.ndf > 0 else float("nan")


class FitError(ValueError):
    """A fit is impossible (too few usable hours, no spread of a regressor); says why."""


def usable_hours(
    hours: pd.DataFrame,
    column: str,
    method: Method,
    exclude: Sequence[Window] = (),
    min_live_fraction: float = 0.5,
) -> np.ndarray:
    """Mask of the hours that enter a fit (see the module docstring)."""
    ok = np.array(hours["live_s"] >= min_live_fraction * 3600.0, dtype=bool)
    ok &= (hours[f"counts_{column}"] > 0).to_numpy()
    for name in ("pressure_hpa", *(t.column for t in TERMS[method])):
        ok &= np.isfinite(hours[name].to_numpy())
    starts = pd.DatetimeIndex(hours.index).as_unit("ns").asi8  # [ns since epoch]
    hour = 3600 * 10**9
    for window in exclude:
        # an hour is out when it overlaps the window
        lo, hi = window.start.as_unit("ns").value, window.end.as_unit("ns").value
        ok &= ~((starts < hi) & (starts + hour > lo))
    return np.asarray(ok)


def fit_column(
    hours: pd.DataFrame,
    column: str,
    method: Method,
    p0_hpa: float,
    teff_ref_k: float,
    exclude: Sequence[Window] = (),
    min_live_fraction: float = 0.5,
    iterations: int = 20,
) -> FitResult:
    """Fit β (and the temperature coefficients of ``method``) on one rate column.

    Parameters
    ----------
    hours : pandas.DataFrame
        :func:`hourly` output.
    column : str
        ``total`` or a region name.
    method : {"pressure", "teff", "duperier"}
        Temperature model (module docstring).
    p0_hpa : float
        Reference pressure P0 (fixed, not fitted). [hPa]
    teff_ref_k : float
        Reference T_eff of the ``teff`` method. [K]
    exclude : sequence of Window
        Intervals kept out.
    min_live_fraction : float
        Live time an hour needs, as a fraction of 3600 s. [1]
    iterations : int
        Gauss-Newton iterations at most (converges in a few: the model is nearly linear).

    Raises
    ------
    FitError
        Fewer usable hours than parameters + 1, or a regressor without spread.
    """
    terms = TERMS[method]
    ok = usable_hours(hours, column, method, exclude, min_live_fraction)
    used = hours[ok]
    n_par = 2 + len(terms)
    if len(used) < n_par + 1:
        raise FitError(
            f"{column}: {len(used)} usable hours, at least {n_par + 1} needed "
            f"for {n_par} parameters"
        )
    counts = used[f"counts_{column}"].to_numpy()
    live = used["live_s"].to_numpy()
    y = np.log(counts / live)
    w = counts  # 1 / var(ln I) for Poisson counts
    dp = (used["pressure_hpa"].to_numpy() - p0_hpa) / 100.0
    references = {
        t.column: (teff_ref_k if t.column == "t_eff_k" else float(used[t.column].mean()))
        for t in terms
    }
    dx = (
        np.column_stack([(used[t.column].to_numpy() - references[t.column]) / 100.0 for t in terms])
        if terms
        else np.zeros((len(used), 0))
    )
    for j, t in enumerate(terms):
        if np.ptp(dx[:, j]) == 0:
            raise FitError(f"{column}: {t.column} does not vary over the fitted hours")
    if np.ptp(dp) == 0:
        raise FitError(f"{column}: the pressure does not vary over the fitted hours")
    # start from the linearised model ln(1 + u) ≈ u, then Gauss-Newton on the exact one
    design = np.column_stack([np.ones(len(used)), dp, dx])
    theta = _wls(design, y, w)[0]
    for _ in range(iterations):
        u = 1.0 + dx @ theta[2:]
        if np.any(u <= 0):
            raise FitError(f"{column}: the temperature term drives the rate negative")
        model = theta[0] + dp * theta[1] + np.log(u)
        jac = np.column_stack([np.ones(len(used)), dp, dx / u[:, None]])
        step = _wls(jac, y - model, w)[0]
        theta = theta + step
        if np.all(np.abs(step) < 1e-12 * (1.0 + np.abs(theta))):
            break
    u = 1.0 + dx @ theta[2:]
    jac = np.column_stack([np.ones(len(used)), dp, dx / u[:, None]])
    covariance = np.linalg.inv(jac.T @ (jac * w[:, None]))
    residual = y - (theta[0] + dp * theta[1] + np.log(u))
    chi2 = float(np.sum(w * residual**2))
    errors = np.sqrt(np.diag(covariance))
    i0 = float(np.exp(theta[0]))
    return FitResult(
        column=column,
        method=method,
        beta=float(theta[1]),
        beta_err=float(errors[1]),
        p0_hpa=p0_hpa,
        i0_hz=i0,
        i0_err_hz=i0 * float(errors[0]),
        coefficients={t.name: float(theta[2 + j]) for j, t in enumerate(terms)},
        errors={t.name: float(errors[2 + j]) for j, t in enumerate(terms)},
        references=references,
        covariance=covariance,
        chi2=chi2,
        ndf=len(used) - n_par,
        hours_used=len(used),
        hours_excluded=len(hours) - len(used),
    )


def _wls(design: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares: parameters and residuals."""
    sw = np.sqrt(w)
    theta, *_ = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)
    return theta, y - design @ theta


def fitted_log_rate(result: FitResult, hours: pd.DataFrame) -> np.ndarray:
    """The fitted ``ln I`` [ln Hz] at each hour of ``hours`` (for plots and residuals)."""
    terms = TERMS[result.method]  # type: ignore[index]
    u = np.ones(len(hours))
    for t in terms:
        u = u + result.coefficients[t.name] / 100.0 * (
            hours[t.column].to_numpy() - result.references[t.column]
        )
    dp = hours["pressure_hpa"].to_numpy() - result.p0_hpa
    with np.errstate(invalid="ignore"):
        return np.log(result.i0_hz) + result.beta / 100.0 * dp + np.log(u)


def fit_all(
    frame: pd.DataFrame,
    method: Method,
    p0_hpa: float,
    teff_ref_k: float,
    exclude: Sequence[Window] = (),
    columns: Sequence[str] = RATE_COLUMNS,
    min_live_fraction: float = 0.5,
) -> tuple[pd.DataFrame, dict[str, FitResult | FitError]]:
    """Hourly aggregates of ``frame`` and the fit of every rate column.

    Returns
    -------
    hours : pandas.DataFrame
        :func:`hourly` output.
    results : dict
        Per column, the :class:`FitResult`, or the :class:`FitError` saying why it failed.
    """
    hours = hourly(frame, columns)
    results: dict[str, FitResult | FitError] = {}
    for c in columns:
        try:
            results[c] = fit_column(
                hours, c, method, p0_hpa, teff_ref_k, exclude, min_live_fraction
            )
        except FitError as exc:
            results[c] = exc
    return hours, results
