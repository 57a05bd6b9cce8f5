"""OliVe (Guo et al. ISCA 2023): 4-bit outlier-victim pair quantization.

Requires float rows to quantize with an even length: weights W[N, K] (one scale per output
channel) or activations X[T, K] (one scale for the whole tensor). Ensures 4-bit codes in the
`q=olive4:channel` storage of ir.formats (see its docstring for the nibble encoding) and the
matching fake-quantized values.

Algorithm: normal values lie on {0, +-4, ..., +-28}, outliers on the abfloat grid {48, 64, 96,
128, 192, 256, 384} (+-), in units of scale = alpha / 28. x / scale goes to the nearest value of
the union. In each pair (2k, 2k+1) an outlier (|q| > 32) makes its neighbour the victim
(value 0, nibble 1000b); when both are outliers the even one is kept. alpha starts at
max(|mu + 3 sigma|, |mu - 3 sigma|) of the scaled rows and is refined by a grid search
alpha0 * r over ALPHA_RATIOS that minimises the mean squared error of the final values.
The float-int "flint" normal grid of the paper is not implemented.
"""

from __future__ import annotations

import numpy as np

from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import (
    OLIVE_NORMAL_STEP,
    OLIVE_OUTLIER_GRID,
    OLIVE_VICTIM,
    QuantCodes,
    olive_pair_values,
)
from sparseflow.ir.types import QuantParams, QuantScheme
from sparseflow.passes.quantize import as_matrix

NORMAL_MAX = 7 * OLIVE_NORMAL_STEP  # 28: alpha maps here
OUTLIER_MIN = 32.0  # |q| above this is an outlier
ALPHA_RATIOS = np.linspace(0.3, 1.5, 61)  # our search grid around alpha0 (step 0.02)
_NORMAL = np.arange(-7, 8) * OLIVE_NORMAL_STEP
_GRID = np.sort(np.concatenate([_NORMAL, OLIVE_OUTLIER_GRID, -OLIVE_OUTLIER_GRID]))


def _nearest(u: np.ndarray) -> np.ndarray:
    """Return the nearest value of the normal U outlier grid (ties go to the smaller value)."""
    idx = np.clip(np.searchsorted(_GRID, u), 1, _GRID.size - 1)
    low, high = _GRID[idx - 1], _GRID[idx]
    return np.where(u - low <= high - u, low, high)


def pair_quantize(u: np.ndarray) -> np.ndarray:
    """Quantize values `u` [R, K] (K even, in grid units) to OliVe nibble codes."""
    q = _nearest(u)
    outlier = np.abs(q) > OUTLIER_MIN
    even_out, odd_out = outlier[:, 0::2], outlier[:, 1::2]
    codes = np.where(q >= 0, q / OLIVE_NORMAL_STEP, q / OLIVE_NORMAL_STEP + 16).astype(np.uint8)
    index = np.searchsorted(OLIVE_OUTLIER_GRID, np.abs(q)) + 1
    abfloat = (np.minimum(index, 7) | np.where(q < 0, 8, 0)).astype(np.uint8)
    codes = np.where(outlier, abfloat, codes)
    victim_odd = even_out  # even outlier: odd neighbour is the victim (also when both are)
    victim_even = odd_out & ~even_out
    codes[:, 1::2] = np.where(victim_odd, OLIVE_VICTIM, codes[:, 1::2])
    codes[:, 0::2] = np.where(victim_even, OLIVE_VICTIM, codes[:, 0::2])
    return codes


def initial_alpha(x: np.ndarray) -> np.ndarray:
    """Return max(|mu + 3 sigma|, |mu - 3 sigma|) of every row of `x` (at least 1e-8)."""
    mu, sigma = x.mean(axis=1), x.std(axis=1)
    return np.maximum(np.maximum(np.abs(mu + 3 * sigma), np.abs(mu - 3 * sigma)), 1e-8)


def _search_scale(x: np.ndarray) -> np.ndarray:
    """Return the per-row f32 scale alpha / 28 of lowest mean squared error."""
    alpha0 = initial_alpha(x)
    best_scale = (alpha0 / NORMAL_MAX).astype(np.float32)
    best_err = np.full(x.shape[0], np.inf)
    for ratio in ALPHA_RATIOS:
        scale = (alpha0 * ratio / NORMAL_MAX).astype(np.float32)
        values = olive_pair_values(pair_quantize(x / scale[:, None])) * scale[:, None]
        err = ((values - x) ** 2).mean(axis=1)
        better = err < best_err
        best_scale[better], best_err[better] = scale[better], err[better]
    return best_scale


def _rows(x: np.ndarray, what: str) -> np.ndarray:
    x = as_matrix(x, f"olive {what}")
    if x.shape[1] % 2:
        raise InputError(f"olive {what}: K = {x.shape[1]} must be even (values come in pairs)")
    return x


def quantize_olive(w: np.ndarray) -> QuantCodes:
    """Quantize W[N, K] to OliVe pairs with one searched scale per output channel."""
    w = _rows(w, "weight")
    scale = _search_scale(w)
    codes = pair_quantize(w / scale[:, None])
    params = QuantParams(QuantScheme.OLIVE, 4, "channel")
    return QuantCodes(params, DType.I4, codes, {"scale": scale})


def olive_fake_quant_tensor(x: np.ndarray) -> np.ndarray:
    """Return activations X[T, K] quantized by OliVe with one searched scale for the tensor."""
    x = _rows(x, "activations")
    flat = x.reshape(1, -1)
    scale = _search_scale(flat)
    values = olive_pair_values(pair_quantize(flat / scale[:, None])) * scale[:, None]
    return values.reshape(x.shape).astype(np.float32)
