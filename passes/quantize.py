"""Integer quantization of weights and activations: primitives, W8A8, INT4 RTN, SmoothQuant.

Requires float arrays: weights W[N, K] (out, in), activations X[T, K], Y = X W^T. Ensures
`QuantCodes` that `ir.formats.pack_weight` stores (dense, or under a sparse selection) and
whose decoded values equal the fake-quantized weights exactly, plus the matching integer
matmuls. Formulas follow the reference algorithms:
- symmetric absmax int-b: qmax = 2^(b-1) - 1, s = max(max|x|, 1e-5) / qmax with an 11-bit
  significand (`ir.dtypes.symmetric_scale`), q = round(x / s);
- asymmetric min-max uint-b (GPTQ/AWQ): maxq = 2^b - 1, xmin = min(min x, 0), xmax =
  max(max x, 0) (both 0: -1, +1), s = (xmax - xmin) / maxq, z = round(-xmin / s),
  q = clamp(round(x / s) + z, 0, maxq);
- SmoothQuant (Xiao et al. 2022): s[k] = max(a[k]^alpha / w[k]^(1 - alpha), 1e-5), folded
  exactly into the norm (divide) and the consuming linears (multiply columns).
Rounding is numpy's round half to even, as torch.round.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sparseflow.ir.dtypes import DType, symmetric_scale
from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import PackedWeight, QuantCodes, pack_weight
from sparseflow.ir.types import QuantParams, QuantScheme

SMOOTH_FLOOR = 1e-5  # SmoothQuant's floor for weight maxima and smoothing factors


def as_matrix(x: np.ndarray, what: str) -> np.ndarray:
    """Return `x` as a float32 2-D array; raise InputError naming `what` for other shapes."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or 0 in x.shape:
        raise InputError(f"{what}: expected a non-empty 2-D array, got shape {x.shape}")
    return x


def symmetric_quantize(x: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantize each row of `x` to signed int-`bits` by absmax; return (codes, f32 scales)."""
    qmax = 2 ** (bits - 1) - 1
    scale = symmetric_scale(np.abs(x).max(axis=-1), qmax)
    codes = np.clip(np.round(x / scale[..., None]), -qmax, qmax)
    return codes.astype(np.int8 if bits <= 8 else np.int32), scale


def asymmetric_params(x: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Return min-max (f32 scale, integer zero point) over the last axis of `x`."""
    maxq = 2**bits - 1
    xmin = np.minimum(x.min(axis=-1).astype(np.float64), 0.0)
    xmax = np.maximum(x.max(axis=-1).astype(np.float64), 0.0)
    both_zero = (xmin == 0) & (xmax == 0)
    xmin, xmax = np.where(both_zero, -1.0, xmin), np.where(both_zero, 1.0, xmax)
    scale = ((xmax - xmin) / maxq).astype(np.float32)
    return scale, np.round(-xmin / scale)


def asymmetric_codes(x: np.ndarray, scale: np.ndarray, zero: np.ndarray, bits: int) -> np.ndarray:
    """Return clamp(round(x / s) + z, 0, 2^bits - 1) with s, z broadcast against `x`."""
    return np.clip(np.round(x / scale) + zero, 0, 2**bits - 1)


def quantize_int8_per_channel(w: np.ndarray) -> QuantCodes:
    """Quantize W[N, K] to symmetric int8 with one scale per output channel (row)."""
    codes, scale = symmetric_quantize(as_matrix(w, "int8 weight quantization"), 8)
    params = QuantParams(QuantScheme.INT, 8, "channel")
    return QuantCodes(params, DType.I8, codes, {"scale": scale})


def quantize_activations_per_token(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantize X[T, K] to symmetric int8 per token; return (int8 [T, K], f32 scale [T])."""
    return symmetric_quantize(as_matrix(x, "int8 activation quantization"), 8)


def int8_matmul(
    x_codes: np.ndarray, x_scale: np.ndarray, w_codes: np.ndarray, w_scale: np.ndarray
) -> np.ndarray:
    """Return (qX @ qW^T) s_x[:, None] s_w[None, :] with an exact integer accumulation."""
    # float64 holds every int8 x int8 sum exactly while K < 2^53 / 127^2, and uses BLAS.
    acc = x_codes.astype(np.float64) @ w_codes.astype(np.float64).T
    return (acc * x_scale[:, None].astype(np.float64) * w_scale[None, :]).astype(np.float32)


def w8a8_matmul(x: np.ndarray, weight: PackedWeight) -> np.ndarray:
    """Compute Y = X W^T with per-token int8 X and the per-channel int8 weight `weight`."""
    if weight.type.quant != QuantParams(QuantScheme.INT, 8, "channel"):
        raise InputError(f"w8a8 matmul needs a dense per-channel int8 weight, got {weight.type}")
    x_codes, x_scale = quantize_activations_per_token(x)
    return int8_matmul(x_codes, x_scale, weight.arrays["values"], weight.arrays["scale"])


def _group_view(w: np.ndarray, group_size: int | None, what: str) -> np.ndarray:
    """Return W[N, K] as [N, K/g, g]; g = K when `group_size` is None (per channel)."""
    group = w.shape[1] if group_size is None else group_size
    if group < 1 or w.shape[1] % group:
        raise InputError(f"{what}: group size {group} does not divide K = {w.shape[1]}")
    return w.reshape(w.shape[0], -1, group)


def quantize_int4_rtn(
    w: np.ndarray, group_size: int | None = 128, symmetric: bool = False
) -> QuantCodes:
    """Round W[N, K] to nearest int4 per (row, group of `group_size`); None means per channel.

    Asymmetric uses the min-max (s, z); symmetric uses absmax with qmax = 7, stored as q + 8
    with z = 8.
    """
    w = as_matrix(w, "int4 quantization")
    groups = _group_view(w, group_size, "int4 quantization")
    if symmetric:
        codes, scale = symmetric_quantize(groups, 4)
        codes, zeros = codes.astype(np.int16) + 8, np.full(scale.shape, 8.0)
    else:
        scale, zeros = asymmetric_params(groups, 4)
        codes = asymmetric_codes(groups, scale[..., None], zeros[..., None], 4)
    return int4_codes(codes.reshape(w.shape), scale, zeros, group_size, symmetric)


def int4_codes(
    codes: np.ndarray,
    scales: np.ndarray,
    zeros: np.ndarray,
    group_size: int | None,
    symmetric: bool,
) -> QuantCodes:
    """Bundle int4 codes [N, K] (0..15) with their [N, K/g] scales and zero points."""
    granularity = "channel" if group_size is None else "group"
    params = QuantParams(QuantScheme.INT, 4, granularity, group_size or 0, symmetric)
    side = {"scales": scales.astype(np.float32), "zeros": zeros.astype(np.uint8)}
    dtype = DType.I4 if symmetric else DType.U4
    return QuantCodes(params, dtype, codes.astype(np.uint8), side)


def dequantize(codes: QuantCodes) -> np.ndarray:
    """Return the float32 values the codes represent (the fake-quantized weight)."""
    return pack_weight(codes).to_dense()


def smoothquant_scales(
    act_absmax: np.ndarray, weights: Sequence[np.ndarray], alpha: float = 0.5
) -> np.ndarray:
    """Return SmoothQuant factors s[K] for the linears fed by one norm.

    `act_absmax[k]` is max over calibration tokens of |X[:, k]|; w[k] is the max over all
    `weights` and their rows of |W[n, k]| (at least 1e-5).
    """
    a = np.asarray(act_absmax, dtype=np.float64)
    if a.ndim != 1 or not weights:
        raise InputError("smoothquant: need act_absmax [K] and at least one weight [N, K]")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"smoothquant: alpha {alpha} is outside [0, 1]")
    mats = [as_matrix(w, "smoothquant weight") for w in weights]
    if any(w.shape[1] != a.size for w in mats):
        raise InputError(f"smoothquant: every weight must have K = {a.size} input columns")
    w_max = np.maximum(np.max([np.abs(w).max(axis=0) for w in mats], axis=0), SMOOTH_FLOOR)
    return np.maximum(a**alpha / w_max ** (1.0 - alpha), SMOOTH_FLOOR).astype(np.float32)


def fold_smoothing(
    norm_weight: np.ndarray,
    norm_bias: np.ndarray | None,
    weights: Sequence[np.ndarray],
    scales: np.ndarray,
) -> tuple[np.ndarray, np.ndarray | None, list[np.ndarray]]:
    """Fold s into the norm (weight and bias divided by s) and the linears (columns times s).

    The composition norm -> linear is unchanged: (x * g / s) (W diag(s))^T = (x * g) W^T.
    """
    s = np.asarray(scales, dtype=np.float32)
    if np.asarray(norm_weight).shape != s.shape:
        raise InputError(f"smoothquant: norm weight shape differs from scales {s.shape}")
    bias = None if norm_bias is None else np.asarray(norm_bias, np.float32) / s
    folded = [as_matrix(w, "smoothquant weight") * s[None, :] for w in weights]
    return np.asarray(norm_weight, np.float32) / s, bias, folded
