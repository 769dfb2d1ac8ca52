"""Unify: the per-station, per-minute unified table (join, corrections, quality flags)."""
