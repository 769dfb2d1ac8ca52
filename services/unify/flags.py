"""Quality flags of the unified table: one table, used for the bitmask and the readable list.

A unified row carries ``quality_flags`` (the integer bitmask) and ``quality`` (the names of the set
flags, in bit order). Bits are part of the ``mingo.unified.minute.v1`` contract: never renumber,
only append.
"""

from __future__ import annotations

from enum import IntFlag
from typing import Final

import numpy as np


class Flag(IntFlag):
    """Quality flags of a unified minute (bit values)."""

    PARTIAL_MINUTE = 1 << 0
    ENV_MISSING = 1 << 1
    ENV_INTERPOLATED = 1 << 2
    ENV_OUT_OF_RANGE = 1 << 3
    PRESSURE_FROM_ERA5 = 1 << 4
    PRESSURE_MISSING = 1 << 5
    ERA5_PENDING = 1 << 6
    ERA5_MISSING = 1 << 7
    ERA5_INTERPOLATED = 1 << 8
    ERA5_PRELIMINARY = 1 << 9
    TEFF_MISSING = 1 << 10
    EFFICIENCY_MISSING = 1 << 11


#: What each flag means (the documentation table of docs/unify.md is this one).
FLAG_DESCRIPTIONS: Final[dict[Flag, str]] = {
    Flag.PARTIAL_MINUTE: "Live time of the minute below 60 s (rates are per live second).",
    Flag.ENV_MISSING: "A station log value has no reading on both sides within the maximum gap.",
    Flag.ENV_INTERPOLATED: "A station log value was interpolated in time between two readings.",
    Flag.ENV_OUT_OF_RANGE: "A station log value (or a reading it comes from) is out of limits.",
    Flag.PRESSURE_FROM_ERA5: "Station barometer unusable: ERA5 surface pressure corrects the rate.",
    Flag.PRESSURE_MISSING: "No pressure at all: no pressure or temperature correction.",
    Flag.ERA5_PENDING: "After the newest ERA5 hour: ERA5 fields and T_eff correction pending.",
    Flag.ERA5_MISSING: "ERA5 hours missing around the minute (not after the newest hour).",
    Flag.ERA5_INTERPOLATED: "ERA5 values interpolated in time between two hours.",
    Flag.ERA5_PRELIMINARY: "ERA5 values come from ERA5T (expver 0005), to be replaced by final.",
    Flag.TEFF_MISSING: "ERA5 present but T_eff missing (incomplete profile): no T correction.",
    Flag.EFFICIENCY_MISSING: "A plane efficiency is missing: no efficiency correction.",
}


def flag_names(mask: int) -> list[str]:
    """Names of the flags set in a bitmask, in bit order.

    Parameters
    ----------
    mask : int
        Bitmask of :class:`Flag` values.

    Returns
    -------
    list of str
        E.g. ``["ENV_INTERPOLATED", "ERA5_PENDING"]``.

    Raises
    ------
    ValueError
        If the mask has bits that are not flags.
    """
    unknown = mask & ~sum(Flag)
    if mask < 0 or unknown:
        raise ValueError(f"bitmask {mask} has bits that are not quality flags")
    return [str(flag.name) for flag in Flag if mask & flag]


def set_flag(masks: np.ndarray, flag: Flag, where: np.ndarray) -> None:
    """Set ``flag`` in the int64 bitmasks where ``where`` is true (in place)."""
    masks[where] |= int(flag)
