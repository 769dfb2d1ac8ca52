"""Fixed detector geometry shared by all stations (DOMAIN.md §2)."""

from __future__ import annotations

import numpy as np

#: Strip centres across the strips, planes 1-4 × strips 1-4. [mm]
STRIP_CENTRES_MM = np.array(
    [
        [-112.0, -49.0, 14.0, 94.5],
        [-94.5, -14.0, 49.0, 112.0],
        [-112.0, -49.0, 14.0, 94.5],
        [-94.5, -14.0, 49.0, 112.0],
    ]
)
#: Strip widths, planes 1-4 × strips 1-4. [mm]
STRIP_WIDTHS_MM = np.array(
    [
        [63.0, 63.0, 63.0, 98.0],
        [98.0, 63.0, 63.0, 63.0],
        [63.0, 63.0, 63.0, 98.0],
        [98.0, 63.0, 63.0, 63.0],
    ]
)
#: Speed of light, for the time of flight between planes. [mm/ns]
C_MM_NS = 299.792458
