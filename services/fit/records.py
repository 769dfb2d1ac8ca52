"""Coefficient records (``schemas.models.Coefficients``) from fit results; storage and use of the
records are in :mod:`services.common.coefficients`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from schemas.models import Coefficients, ColumnFit
from services.fit.model import FitError, FitResult, Method, Window


def column_fit(result: FitResult) -> ColumnFit:
    """The contract form of one column's fit."""
    return ColumnFit(
        column=result.column,
        beta_pct_per_hpa=result.beta,
        beta_err_pct_per_hpa=result.beta_err,
        alpha_t_pct_per_k=result.coefficients.get("alpha_t"),
        alpha_t_err_pct_per_k=result.errors.get("alpha_t"),
        alpha_h_pct_per_m=result.coefficients.get("alpha_h"),
        alpha_h_err_pct_per_m=result.errors.get("alpha_h"),
        i0_hz=result.i0_hz,
        i0_err_hz=result.i0_err_hz,
        chi2=result.chi2,
        ndf=result.ndf,
        hours_used=result.hours_used,
        hours_excluded=result.hours_excluded,
    )


def build_record(
    station: int,
    version: int,
    created: datetime,
    method: Method,
    start: datetime,
    end: datetime,
    exclude: Sequence[Window],
    results: Mapping[str, FitResult | FitError],
) -> Coefficients:
    """A record of the successful fits (the total first); raises FitError if the total failed."""
    total = results.get("total")
    if not isinstance(total, FitResult):
        raise FitError(f"no record without a fit of the total rate: {total}")
    fits = [total, *(r for c, r in results.items() if c != "total" and isinstance(r, FitResult))]
    return Coefficients(
        station=station,
        version=version,
        created=created,
        method=method,
        start=start,
        end=end,
        excluded=[f"{w.start.isoformat()}/{w.end.isoformat()}" for w in exclude],
        p0_hpa=total.p0_hpa,
        teff_ref_k=total.references.get("t_eff_k"),
        references=dict(total.references),
        fits=[column_fit(f) for f in fits],
    )
