"""FP4 E2M1 quantization with a real-valued exponent bias searched per output channel (LLM-FP4).

Requires float W[N, K] (out, in) and, for the searches, calibration inputs X[T, K]. Ensures
`QuantCodes` in the `q=fp4:channel` storage of ir.formats (4-bit sign/magnitude codes plus
`exponent_bias` f32[N]) whose decoded values are the quantized weights.

Format FP(E, M), E = 2, M = 1, sign bit, bias b (real), no inf/NaN (Liu et al. 2023 and the
reference implementation github.com/nbasyl/LLM-FP4, quant_layers/fp_linear.py):
maxval(b) = (2 - 2^-M) 2^(2^E - 1 - b); x_c = clamp(x, -maxval, maxval);
e = max(floor(log2 |x_c| + b), 1); step = 2^(e - M - b); x^ = round(x_c / step) step.
(The reference code floors log2 |x_c| + b together; that keeps e an integer.) For E2M1 the
values are exactly 2^(1 - b) {0, 0.5, 1, 1.5, 2, 3, 4, 6}, the OCP MX E2M1 grid scaled, so a
code is a sign and an index into that grid.
Search: b0 = 2^E - log2(max|w|) + log2(2 - 2^-M) - 1 (maxval = max|w|) per output channel;
candidates b = b0 * r for r = lo + i (hi - lo) / n, i = 0..n, n = 100, and r = 1; keep per
channel the b with the lowest layer-output L2 error ||X (w_n - w^_n)||. (lo, hi) = (0.01, 1.2)
are the reference configuration's eq_alpha/eq_beta; (0, 1) gives b0 * i / n. The baseline
`quantize_fp4_fixed` uses one fixed bias (1: the OCP MX E2M1 values). Activations use one
bias per tensor, searched the same way against the quantized weight.
"""

from __future__ import annotations

import numpy as np

from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import FP4_E2M1_GRID, QuantCodes
from sparseflow.ir.types import QuantParams, QuantScheme
from sparseflow.passes.quantize import as_matrix

EXPONENT_BITS = 2
MANTISSA_BITS = 1
SEARCH_STEPS = 100  # eq_n of the reference configuration
SEARCH_RATIOS = (0.01, 1.2)  # eq_alpha, eq_beta of the reference configuration
MX_E2M1_BIAS = 1.0  # OCP MX E2M1: the grid {0, 0.5, ..., 6} unscaled
_ABSMAX_FLOOR = 1e-12  # keeps log2 finite for all-zero channels


def max_value(bias: np.ndarray) -> np.ndarray:
    """Return the largest representable magnitude (2 - 2^-M) 2^(2^E - 1 - b)."""
    return (2.0 - 2.0**-MANTISSA_BITS) * np.exp2(2**EXPONENT_BITS - 1 - bias)


def initial_bias(w: np.ndarray) -> np.ndarray:
    """Return the per-row bias b0 whose maxval equals the row's max |w|."""
    absmax = np.maximum(np.abs(w).max(axis=1).astype(np.float64), _ABSMAX_FLOOR)
    return 2**EXPONENT_BITS - np.log2(absmax) + np.log2(2.0 - 2.0**-MANTISSA_BITS) - 1


def fp4_round(x: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Quantize rows of `x` by the LLM-FP4 formula with per-row `bias`; return float64 x^."""
    x = np.asarray(x, np.float64)
    b = np.asarray(bias, np.float64)[:, None]
    limit = max_value(b)
    x_c = np.clip(x, -limit, limit)
    with np.errstate(divide="ignore"):
        log_mag = np.log2(np.abs(x_c))
    e = np.maximum(np.floor(log_mag + b), 1.0)
    step = np.exp2(e - MANTISSA_BITS - b)
    return np.round(x_c / step) * step


def fp4_encode(x: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Return the 4-bit codes (sign << 3 | grid index) of `fp4_round(x, bias)`."""
    scaled = fp4_round(x, bias) / np.exp2(1.0 - np.asarray(bias, np.float64))[:, None]
    index = np.abs(np.searchsorted(FP4_E2M1_GRID, np.abs(scaled) - 1e-6))
    sign = (scaled < 0) & (index > 0)
    return (index | (sign.astype(np.int64) << 3)).astype(np.uint8)


def _codes(w: np.ndarray, bias: np.ndarray) -> QuantCodes:
    bias = np.asarray(bias, np.float32)
    side = {"exponent_bias": bias}
    params = QuantParams(QuantScheme.FP4, 4, "channel")
    return QuantCodes(params, DType.FP4, fp4_encode(w, bias), side)


def quantize_fp4_fixed(w: np.ndarray, bias: float = MX_E2M1_BIAS) -> QuantCodes:
    """Quantize W[N, K] to E2M1 with one fixed exponent bias for every channel."""
    w = as_matrix(w, "fp4 weight")
    return _codes(w, np.full(w.shape[0], bias))


def _candidates(steps: int, ratios: tuple[float, float]) -> np.ndarray:
    """Return the bias ratios r = lo + i (hi - lo) / n, i = 0..n, and 1."""
    if steps < 1 or not 0 <= ratios[0] < ratios[1]:
        raise InputError(f"fp4: bad bias search steps {steps} or ratio range {ratios}")
    return np.append(ratios[0] + np.arange(steps + 1) * (ratios[1] - ratios[0]) / steps, 1.0)


def quantize_fp4_searched(
    w: np.ndarray,
    x_calib: np.ndarray,
    steps: int = SEARCH_STEPS,
    ratios: tuple[float, float] = SEARCH_RATIOS,
) -> QuantCodes:
    """Quantize W[N, K] to E2M1 with the per-channel bias of lowest output error on X."""
    w = as_matrix(w, "fp4 weight")
    x = as_matrix(x_calib, "fp4 calibration inputs").astype(np.float64)
    if x.shape[1] != w.shape[1]:
        raise InputError(f"fp4: calibration inputs have K = {x.shape[1]}, weight {w.shape}")
    b0, candidates = initial_bias(w), _candidates(steps, ratios)
    best_bias, best_err = b0.copy(), np.full(w.shape[0], np.inf)
    for ratio in candidates:
        bias = (b0 * ratio).astype(np.float32)
        err = ((x @ (w - fp4_round(w, bias)).T) ** 2).sum(axis=0)
        better = err < best_err
        best_bias[better], best_err[better] = bias[better], err[better]
    return _codes(w, best_bias)


def fp4_fake_quant_tensor(x: np.ndarray, bias: float) -> np.ndarray:
    """Return activations X[T, K] quantized to E2M1 with one exponent bias for the tensor."""
    x = as_matrix(x, "fp4 activations")
    flat = fp4_round(x.reshape(1, -1), np.array([bias]))
    return flat.reshape(x.shape).astype(np.float32)


def search_fp4_activation_bias(
    x_calib: np.ndarray,
    w_hat: np.ndarray,
    steps: int = SEARCH_STEPS,
    ratios: tuple[float, float] = SEARCH_RATIOS,
) -> float:
    """Return the per-tensor activation bias of lowest output error ||X W^T - X^ W^^T||.

    `w_hat` is the layer's (already quantized) weight; the candidates are those of the weight
    search around b0 = the bias whose maxval is max |X|.
    """
    x, w_hat = as_matrix(x_calib, "fp4 calibration inputs"), as_matrix(w_hat, "fp4 weight")
    if x.shape[1] != w_hat.shape[1]:
        raise InputError(f"fp4: calibration inputs have K = {x.shape[1]}, weight {w_hat.shape}")
    b0, candidates = float(initial_bias(x.reshape(1, -1))[0]), _candidates(steps, ratios)
    y = x.astype(np.float64) @ w_hat.T
    errors = [np.linalg.norm(fp4_fake_quant_tensor(x, b0 * r) @ w_hat.T - y) for r in candidates]
    return float(b0 * candidates[int(np.argmin(errors))])
