"""Reconstruct: raw event chunks → calibrated tracks → per-minute rates (DOMAIN.md §5)."""
