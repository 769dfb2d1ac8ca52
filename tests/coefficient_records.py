"""A ``teff`` coefficients record (what ``mingo fit --write`` stores) with chosen values."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.models import Coefficients, ColumnFit


def teff_record(
    station: int,
    version: int,
    beta: float,
    alpha_t: float,
    p0_hpa: float = 945.0,
    teff_ref_k: float = 221.0,
) -> Coefficients:
    """A record whose total-rate fit has β [%/hPa] and α_T [%/K] (errors and χ² plausible)."""
    fit = ColumnFit(
        column="total",
        beta_pct_per_hpa=beta,
        beta_err_pct_per_hpa=0.01,
        alpha_t_pct_per_k=alpha_t,
        alpha_t_err_pct_per_k=0.02,
        i0_hz=8.0,
        i0_err_hz=0.01,
        chi2=20.0,
        ndf=20,
        hours_used=22,
        hours_excluded=2,
    )
    return Coefficients(
        station=station,
        version=version,
        created=datetime(2024, 4, 1, tzinfo=UTC),
        method="teff",
        start=datetime(2024, 2, 1, tzinfo=UTC),
        end=datetime(2024, 3, 1, tzinfo=UTC),
        excluded=[],
        p0_hpa=p0_hpa,
        teff_ref_k=teff_ref_k,
        references={"t_eff_k": teff_ref_k},
        fits=[fit],
    )
