"""Deterministic random streams of the simulator.

Every random number comes from a numpy ``Generator`` built from ``SeedSequence(entropy=seed,
spawn_key=(station, stream, *key))``: one independent stream per station, purpose and (where it
matters) hour or day, so any hour or day can be regenerated alone and gives the same bytes.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    """Purpose of a random stream (part of its spawn key; never renumber)."""

    PARAMETERS = 1  #: per-station detector/electronics parameters
    WEATHER = 2  #: per-station synthetic weather model
    ACCEPTANCE = 3  #: the acceptance pre-pass
    FILE_OFFSET = 4  #: seconds after the hour at which a file starts (key: hour)
    TRIGGER = 5  #: arrivals, tracks, detection, trigger (key: hour)
    ELECTRONICS = 6  #: channel values of triggered events (key: hour)
    SELF_TRIGGER = 7  #: the daily self-trigger run (key: hour)
    DAT_DAMAGE = 8  #: damaged event lines (key: hour)
    LOGS = 9  #: slow-control values (key: day, log type)
    LOG_DAMAGE = 10  #: damaged log lines (key: day)
    ERA5 = 11  #: spatial gradients of the ERA5 grid
    SPAN = 12  #: span-level choices (which file is truncated, ...)


def rng_for(seed: int, station: int, stream: Stream, *key: int) -> np.random.Generator:
    """The random generator of one (station, purpose, key) stream.

    Parameters
    ----------
    seed : int
        The run's seed (non-negative).
    station : int
        Station id.
    stream : Stream
        Purpose.
    *key : int
        Further non-negative integers, e.g. the hour index since 1970.
    """
    if seed < 0 or station < 0 or any(k < 0 for k in key):
        raise ValueError("seed, station and keys must be non-negative integers")
    sequence = np.random.SeedSequence(entropy=seed, spawn_key=(station, int(stream), *key))
    return np.random.Generator(np.random.PCG64(sequence))
