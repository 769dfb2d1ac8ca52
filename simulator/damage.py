"""Damage of event lines as real station files show it (DOMAIN.md §3), and a strict validity check.

Every kind makes the line invalid by construction (and :func:`damage_line` verifies it):

========================  =============================================================  ===========
kind                      what happens                                                    category
========================  =============================================================  ===========
``missing_field``         one token removed (70 fields)                                  field_count
``extra_field``           a ``0000.0000`` token inserted (72 fields)                     field_count
``glued_tokens``          the space between two value tokens removed, preferably before  glued
                          a negative one (``-125.3125-124.0625``, like ``12.5-3.1``)
``glued_lines``           the newline to the next line removed: ``...0000.00002024 03``  glued
                          (two events on one physical line, 141 fields)
``malformed_number``      a second decimal point in a value (``-120.144.0``)             malformed
``bad_month``             month 13                                                       date
``bad_day``               day 32                                                         date
``feb_30``                February 30                                                    date
``bad_hour``              hour 25                                                        date
``truncated_line``        the last line of a file cut inside a token, no newline         truncated
========================  =============================================================  ===========
"""

from __future__ import annotations

import re
from datetime import datetime

import numpy as np

from schemas.dat_format import N_FIELDS, N_TIME_FIELDS, TRIGGER_TYPES

#: Kinds applied to single lines and their relative frequencies.
LINE_KINDS: dict[str, float] = {
    "missing_field": 0.15,
    "extra_field": 0.10,
    "glued_tokens": 0.15,
    "glued_lines": 0.10,
    "malformed_number": 0.15,
    "bad_month": 0.10,
    "bad_day": 0.10,
    "feb_30": 0.05,
    "bad_hour": 0.10,
}
CATEGORY = {
    "missing_field": "field_count",
    "extra_field": "field_count",
    "glued_tokens": "glued",
    "glued_lines": "glued",
    "malformed_number": "malformed",
    "bad_month": "date",
    "bad_day": "date",
    "feb_30": "date",
    "bad_hour": "date",
    "truncated_line": "truncated",
}

_VALUE = re.compile(r"-?\d+\.\d{4}")
_INT2 = re.compile(r"\d{1,2}")


def is_valid_event_line(line: str) -> bool:
    """Strict check of one event line (without its newline): 71 fields, a real UTC date and time,
    trigger type 1 or 2, 64 values with exactly 4 decimals."""
    tokens = line.split(" ")
    if len(tokens) != N_FIELDS or any(not t for t in tokens):
        return False
    date = tokens[:N_TIME_FIELDS]
    if not re.fullmatch(r"\d{4}", date[0]) or not all(_INT2.fullmatch(t) for t in date[1:]):
        return False
    try:
        year, month, day, hour, minute, second = (int(t) for t in date)
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    if not tokens[N_TIME_FIELDS].isdigit() or int(tokens[N_TIME_FIELDS]) not in TRIGGER_TYPES:
        return False
    return all(_VALUE.fullmatch(t) for t in tokens[N_TIME_FIELDS + 1 :])


def choose_kinds(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` damage kinds drawn with the frequencies of :data:`LINE_KINDS`."""
    names = list(LINE_KINDS)
    p = np.array([LINE_KINDS[k] for k in names])
    return [names[i] for i in rng.choice(len(names), size=n, p=p / p.sum())]


def damage_line(
    line: str, kind: str, rng: np.random.Generator, next_line: str | None = None
) -> str:
    """Apply one kind of damage to a valid line (no newline). ``glued_lines`` needs ``next_line``.

    Raises
    ------
    AssertionError
        If the result would still be a valid line (never happens by construction).
    """
    tokens = line.split(" ")
    first_value = N_TIME_FIELDS + 1
    if kind == "missing_field":
        del tokens[int(rng.integers(0, len(tokens)))]
    elif kind == "extra_field":
        tokens.insert(int(rng.integers(first_value, len(tokens) + 1)), "0000.0000")
    elif kind == "glued_tokens":
        negative = [j for j in range(first_value, len(tokens) - 1) if tokens[j + 1].startswith("-")]
        pool = negative or list(range(first_value, len(tokens) - 1))
        j = pool[int(rng.integers(0, len(pool)))]
        tokens[j : j + 2] = [tokens[j] + tokens[j + 1]]
    elif kind == "glued_lines":
        if next_line is None:
            raise ValueError("glued_lines needs the next line")
        tokens = (line + next_line).split(" ")
    elif kind == "malformed_number":
        nonzero = [j for j in range(first_value, len(tokens)) if tokens[j] != "0000.0000"]
        pool = nonzero or list(range(first_value, len(tokens)))
        j = pool[int(rng.integers(0, len(pool)))]
        tokens[j] = tokens[j][:-1] + "." + tokens[j][-1]
    elif kind == "bad_month":
        tokens[1] = "13"
    elif kind == "bad_day":
        tokens[2] = "32"
    elif kind == "feb_30":
        tokens[1], tokens[2] = "02", "30"
    elif kind == "bad_hour":
        tokens[3] = "25"
    else:
        raise ValueError(f"unknown damage kind {kind!r}")
    out = " ".join(tokens)
    assert not is_valid_event_line(out), f"damage {kind} left a valid line"
    return out


def truncate_line(line: str, rng: np.random.Generator) -> str:
    """Cut a line inside one of its value tokens 10..60 (keeping at least one character of it)."""
    tokens = line.split(" ")
    j = int(rng.integers(10, min(60, len(tokens) - 1)))
    start = sum(len(t) + 1 for t in tokens[:j])
    cut = start + int(rng.integers(1, len(tokens[j])))
    out = line[:cut]
    assert not is_valid_event_line(out)
    return out
