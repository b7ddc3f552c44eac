"""Boundary validation helpers shared by the aggregation and metrics modules.

Every helper either returns a numpy view/copy of the input that is safe to compute on or
raises ``ValueError`` naming the offending argument and the received shape/value.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def as_float_array(x: Any, name: str) -> np.ndarray:
    """Convert ``x`` to a floating array without up-casting float32 input.

    Shape: any -> same shape.
    """
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be array-like, got {type(x).__name__}") from exc
    if arr.dtype == object:
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
    return arr


def check_unit_interval(arr: np.ndarray, name: str) -> None:
    """Raise if any non-NaN value lies outside [0, 1] (infinities included)."""
    bad = (arr < 0.0) | (arr > 1.0)
    if np.any(bad):
        first = float(arr[bad].flat[0])
        raise ValueError(f"{name} values must lie in [0, 1] or be NaN, got {first!r}")


def check_votes(votes: Any, name: str = "votes") -> np.ndarray:
    """Validate a teacher vote tensor.

    Shape: votes (N, T, K) with values in [0, 1] or NaN (abstain) -> same array, floating.
    N may be 0 (an empty shard); T and K must be >= 1.
    """
    arr = as_float_array(votes, name)
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (N, T, K), got ndim={arr.ndim} shape={arr.shape}")
    if arr.shape[1] < 1 or arr.shape[2] < 1:
        raise ValueError(f"{name} needs at least one teacher and one label, got shape {arr.shape}")
    check_unit_interval(arr, name)
    return arr


def check_probs(probs: Any, name: str = "probs") -> np.ndarray:
    """Validate a probability matrix.

    Shape: probs (N, K) with values in [0, 1] or NaN -> same array, floating.
    """
    arr = as_float_array(probs, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (N, K), got ndim={arr.ndim} shape={arr.shape}")
    check_unit_interval(arr, name)
    return arr


def check_binary(y: Any, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Validate a 0/1 target matrix (bool, int or float without NaN).

    Shape: y (N, K) -> float64 (N, K); ``shape`` (if given) must match exactly.
    """
    arr = as_float_array(y, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (N, K), got ndim={arr.ndim} shape={arr.shape}")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    bad = ~((arr == 0.0) | (arr == 1.0))
    if np.any(bad):
        raise ValueError(f"{name} must contain only 0/1 values, got {float(arr[bad].flat[0])!r}")
    return arr.astype(np.float64, copy=False)


def nan_rows(arr: np.ndarray) -> np.ndarray:
    """Rows containing any NaN.

    Shape: arr (N, K) -> (N,) bool.
    """
    return np.isnan(arr).any(axis=1)


def check_finite(x: Any, name: str, shape: str) -> np.ndarray:
    """A finite float array of ``len(shape.split(","))`` dimensions, else ValueError naming
    ``name`` and the expected ``shape`` (e.g. ``"N, H"``)."""
    arr = as_float_array(x, name)
    if arr.ndim != len(shape.split(",")):
        raise ValueError(f"{name} must have shape ({shape}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {float(arr[~np.isfinite(arr)][0])!r}")
    return arr
