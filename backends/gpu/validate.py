"""Check host-wrapper arguments and turn bad input into one-line InputErrors.

Every check names the argument at fault and what was expected, so a wrong shape or dtype
never reaches a kernel (where it would read out of bounds or silently give a wrong answer).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sparseflow.ir.errors import InputError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
FLOAT32 = (np.dtype(np.float32),)


def check_array(
    name: str,
    value: object,
    dtypes: Sequence[np.dtype],
    ndim: int | Sequence[int],
    *,
    allow_neg_inf: bool = False,
) -> np.ndarray:
    """Return value as a C-contiguous array after checking its type, dtype, rank and size.

    Float arrays must be finite; with allow_neg_inf, -inf (a masked logit) is accepted too.
    """
    if not isinstance(value, np.ndarray):
        raise InputError(f"{name}: expected a numpy array, got {type(value).__name__}")
    ranks = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if value.ndim not in ranks:
        wanted = " or ".join(f"{r}-D" for r in ranks)
        raise InputError(f"{name}: expected a {wanted} array, got shape {value.shape}")
    if value.dtype not in dtypes:
        wanted = ", ".join(str(d) for d in dtypes)
        raise InputError(f"{name}: expected dtype {wanted}, got {value.dtype}")
    if value.size == 0:
        raise InputError(f"{name}: empty array of shape {value.shape}")
    finite = np.isfinite(value) | (np.isneginf(value) if allow_neg_inf else False)
    if value.dtype.kind == "f" and not finite.all():
        raise InputError(f"{name}: contains NaN or infinity")
    return np.ascontiguousarray(value)


def check_dim(name: str, axis: int, actual: int, expected: int, why: str) -> None:
    """Raise InputError unless dimension `axis` of `name` equals expected."""
    if actual != expected:
        raise InputError(f"{name}: dim {axis} is {actual}, expected {expected} ({why})")


def check_shape(name: str, actual: tuple[int, ...], expected: tuple[int, ...], why: str) -> None:
    """Raise InputError unless the shape of `name` equals expected."""
    if tuple(actual) != tuple(expected):
        raise InputError(f"{name}: shape {tuple(actual)}, expected {tuple(expected)} ({why})")


def check_positive(name: str, value: float) -> float:
    """Return value if it is a finite number > 0, else raise InputError."""
    if not isinstance(value, int | float) or not np.isfinite(value) or value <= 0:
        raise InputError(f"{name}={value!r}: must be a finite number > 0")
    return float(value)


def check_int_range(name: str, values: np.ndarray, low: int, high: int) -> None:
    """Raise InputError unless every entry of an integer array lies in [low, high]."""
    if values.size and (int(values.min()) < low or int(values.max()) > high):
        raise InputError(
            f"{name}: values must lie in [{low}, {high}], got [{values.min()}, {values.max()}]"
        )
