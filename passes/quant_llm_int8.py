"""LLM.int8() (Dettmers et al. 2022): vector-wise int8 with an fp16 outlier-feature path.

Requires float W[N, K] (out, in) and activations X[T, K]. Ensures `QuantCodes` in the
`q=llm.int8:channel` storage of ir.formats (int8 CB, row absmax SCB, optional calibrated
outlier columns with their fp16 weights) and the decomposed matmul:
1. outlier columns O = {k : some |X[t, k]| >= threshold} (plus the stored calibrated ones);
2. X_in = X with columns O zeroed, SCA[t] = max_k |X_in[t, k]|, CA = round(127 X_in / SCA);
3. Y_int8 = (CA @ CB^T) * SCA[:, None] * SCB[None, :] / 127^2, integer accumulation;
4. Y_out = X[:, O] @ W[:, O]^T in fp16 (inputs rounded to fp16, fp32 accumulation), with W[:, O]
   from the stored fp16 copy where calibrated, else from the dequantized CB;
5. Y = Y_int8 + Y_out.
"""

from __future__ import annotations

import numpy as np

from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import PackedWeight, QuantCodes
from sparseflow.ir.types import QuantParams, QuantScheme
from sparseflow.passes.quantize import as_matrix, int8_matmul

LLM_INT8_THRESHOLD = 6.0  # outlier magnitude threshold of the paper and bitsandbytes
INT8_MAX = 127.0


def _vectorwise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (round(127 x / absmax) as int8, f32 row absmax); all-zero rows give code 0."""
    absmax = np.abs(x).max(axis=1).astype(np.float32)
    safe = np.where(absmax > 0, absmax, np.float32(1))
    codes = np.clip(np.round(INT8_MAX * x / safe[:, None]), -INT8_MAX, INT8_MAX)
    return codes.astype(np.int8), absmax


def outlier_columns(x: np.ndarray, threshold: float = LLM_INT8_THRESHOLD) -> np.ndarray:
    """Return the sorted int32 columns k of X where some |X[t, k]| >= threshold."""
    if threshold <= 0:
        raise InputError(f"llm.int8 threshold {threshold} must be positive")
    x = as_matrix(x, "llm.int8 activations")
    return np.nonzero((np.abs(x) >= threshold).any(axis=0))[0].astype(np.int32)


def quantize_llm_int8(w: np.ndarray, outlier_cols: np.ndarray | None = None) -> QuantCodes:
    """Quantize W vector-wise (CB, SCB) and keep fp16 copies of the calibrated outlier columns."""
    w = as_matrix(w, "llm.int8 weight")
    cols = np.unique(np.asarray([] if outlier_cols is None else outlier_cols, np.int64))
    if cols.size and (cols[0] < 0 or cols[-1] >= w.shape[1]):
        raise InputError(f"llm.int8 outlier_cols must lie in 0..{w.shape[1] - 1}")
    codes, scb = _vectorwise(w)
    side = {
        "scb": scb,
        "outlier_cols": cols.astype(np.int32),
        "outlier_values": w[:, cols].astype(np.float16),
    }
    return QuantCodes(QuantParams(QuantScheme.LLM_INT8, 8, "channel"), DType.I8, codes, side)


def _outlier_weights(weight: PackedWeight, cols: np.ndarray) -> np.ndarray:
    """Return W[:, cols] in fp16: the stored copy where calibrated, else dequantized CB."""
    arrays = weight.arrays
    cb = arrays["values"][:, cols].astype(np.float32)
    out = (cb * arrays["scb"][:, None] / np.float32(INT8_MAX)).astype(np.float16)
    stored = np.searchsorted(arrays["outlier_cols"], cols)
    hit = stored < arrays["outlier_cols"].size
    hit[hit] = arrays["outlier_cols"][stored[hit]] == cols[hit]
    out[:, hit] = arrays["outlier_values"][:, stored[hit]]
    return out


def llm_int8_matmul(
    x: np.ndarray, weight: PackedWeight, threshold: float = LLM_INT8_THRESHOLD
) -> np.ndarray:
    """Compute Y = X W^T by the LLM.int8() decomposition (steps 1-5 of the module docstring)."""
    if weight.type.quant is None or weight.type.quant.scheme is not QuantScheme.LLM_INT8:
        raise InputError(f"llm.int8 matmul needs an llm.int8 weight, got {weight.type}")
    x = as_matrix(x, "llm.int8 activations")
    if x.shape[1] != weight.shape[1]:
        raise InputError(f"llm.int8: activations have K = {x.shape[1]}, weight {weight.shape}")
    cols = np.union1d(outlier_columns(x, threshold), weight.arrays["outlier_cols"])
    x_in = x.copy()
    x_in[:, cols] = 0.0
    ca, sca = _vectorwise(x_in)
    scale = weight.arrays["scb"] / np.float32(INT8_MAX**2)
    y = int8_matmul(ca, sca, weight.arrays["values"], scale)
    x_out = x[:, cols].astype(np.float16).astype(np.float32)
    w_out = _outlier_weights(weight, cols).astype(np.float32)
    return y + x_out @ w_out.T
