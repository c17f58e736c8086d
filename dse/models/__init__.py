"""Analytical cost models: pure functions over floats or numpy arrays in SI units (s, B, FLOP, W).

No pint, no I/O and no Optuna in here; one formula serves a scalar design point and a numpy column.
"""
