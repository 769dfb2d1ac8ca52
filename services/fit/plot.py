"""PNG of a fit: the pressure dependence, the hourly rate with the model, the residuals."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from services.fit.model import TERMS, FitResult, Window, fitted_log_rate, usable_hours


def plot_fit(
    result: FitResult,
    hours: pd.DataFrame,
    path: Path,
    station: int,
    exclude: list[Window] | None = None,
) -> Path:
    """Write the figure of one column's fit to ``path`` (PNG) and return it.

    Panels: ln(I/I0) with the temperature term removed against P - P0 [hPa] with the fitted
    line; the hourly rate [Hz] and the model against time; the normalised residuals
    (ln I - model) · sqrt(N) against time. Excluded hours are grey.
    """
    method = result.method
    used = usable_hours(hours, result.column, method, exclude or [])  # type: ignore[arg-type]
    counts = hours[f"counts_{result.column}"].to_numpy()
    live = hours["live_s"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = counts / live
        model = fitted_log_rate(result, hours)
        pull = (np.log(rate) - model) * np.sqrt(counts)
    dp = hours["pressure_hpa"].to_numpy() - result.p0_hpa
    temperature = model - np.log(result.i0_hz) - result.beta / 100.0 * dp
    time = pd.DatetimeIndex(hours.index).tz_convert(None)
    fig, axes = plt.subplots(3, 1, figsize=(9, 10), constrained_layout=True)
    ax = axes[0]
    y = np.log(rate / result.i0_hz) - temperature
    ax.plot(dp[~used], y[~used], ".", color="0.7", label="excluded")
    ax.plot(dp[used], y[used], ".", ms=3, label="hours used")
    line = np.linspace(np.nanmin(dp), np.nanmax(dp), 50)
    ax.plot(
        line,
        result.beta / 100.0 * line,
        "k-",
        label=f"β = {result.beta:.4f} ± {result.beta_err:.4f} %/hPa",
    )
    ax.set_xlabel("P - P0 [hPa]")
    ax.set_ylabel("ln(I/I0), temperature term removed")
    ax.legend(fontsize=8)
    terms = ", ".join(
        f"{t.name} = {result.coefficients[t.name]:.4f} ± {result.errors[t.name]:.4f} {t.unit}"
        for t in TERMS[method]  # type: ignore[index]
    )
    ax.set_title(
        f"station {station}, {result.column}, {method}: {terms}  "
        f"χ²/ndf = {result.chi2_ndf:.2f}, {result.hours_used} h used, "
        f"{result.hours_excluded} excluded",
        fontsize=8,
    )
    ax = axes[1]
    ax.plot(time, rate, ".", ms=3, label="hourly rate")
    ax.plot(time, np.exp(model), "-", lw=1, label="model")
    ax.set_ylabel("rate [Hz]")
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.plot(time[used], pull[used], ".", ms=3)
    ax.plot(time[~used], pull[~used], ".", ms=3, color="0.7")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("(ln I - model) √N")
    ax.set_xlabel("time [UTC]")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
