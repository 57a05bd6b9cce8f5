"""Element-wise ops, activations, normalisations, softmax and activation quantization."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sparseflow.ir.dims import Dim, same_dim
from sparseflow.ir.dtypes import DType, parse_dtype, round_significand, symmetric_scale
from sparseflow.ir.ops import (
    AttrDict,
    Cost,
    Op,
    OpClass,
    TypeMismatch,
    dense_bytes,
    register,
    storage_bytes,
)
from sparseflow.ir.ops_tensor import axis_index
from sparseflow.ir.types import QuantParams, QuantScheme, TensorType

Bindings = dict[str, int]


def pointwise_cost(flops_per_element: int):
    """Return a cost function: `flops_per_element` per output element, inputs read once."""

    def cost(ins: Sequence[TensorType], out: TensorType, a: AttrDict, b: Bindings) -> Cost:
        flops = flops_per_element * out.numel(b)
        return Cost(flops, tuple(storage_bytes(t, b) for t in ins), dense_bytes(out, b))

    return cost


def broadcast_shape(x: Sequence[Dim], y: Sequence[Dim]) -> tuple[Dim, ...]:
    """Return the numpy broadcast of two shapes, or raise TypeMismatch."""
    rank = max(len(x), len(y))
    x = (1,) * (rank - len(x)) + tuple(x)
    y = (1,) * (rank - len(y)) + tuple(y)
    out: list[Dim] = []
    for a, b in zip(x, y, strict=True):
        if same_dim(a, b) or b == 1:
            out.append(a)
        elif a == 1:
            out.append(b)
        else:
            raise TypeMismatch(f"shapes {list(x)} and {list(y)} do not broadcast")
    return tuple(out)


def _float_out(ins: Sequence[TensorType], shape: tuple[Dim, ...]) -> TensorType:
    return TensorType(shape, ins[0].dtype if ins[0].dtype.is_float else DType.F32)


def _unary(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
    return _float_out(ins, ins[0].shape)


def _binary(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
    return _float_out(ins, broadcast_shape(ins[0].shape, ins[1].shape))


@register(Op.ADD, OpClass.ELEMENTWISE, (2, 2))
class Add:
    """x + y with numpy broadcasting."""

    infer = staticmethod(_binary)
    cost = staticmethod(pointwise_cost(1))

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        return (xs[0] + xs[1]).astype(np.float32)


@register(Op.MUL, OpClass.ELEMENTWISE, (2, 2))
class Mul:
    """x * y with numpy broadcasting."""

    infer = staticmethod(_binary)
    cost = staticmethod(pointwise_cost(1))

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        return (xs[0] * xs[1]).astype(np.float32)


@register(Op.SCALE, OpClass.ELEMENTWISE, (1, 1))
class Scale:
    """x * attr `factor` (a constant)."""

    infer = staticmethod(_unary)
    cost = staticmethod(pointwise_cost(1))

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        return (xs[0] * np.float32(a["factor"])).astype(np.float32)


@register(Op.RELU, OpClass.ELEMENTWISE, (1, 1))
class Relu:
    """max(x, 0)."""

    infer = staticmethod(_unary)
    cost = staticmethod(pointwise_cost(1))

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        return np.maximum(xs[0], 0).astype(np.float32)


@register(Op.SILU, OpClass.ELEMENTWISE, (1, 1))
class Silu:
    """x * sigmoid(x)."""

    infer = staticmethod(_unary)
    cost = staticmethod(pointwise_cost(4))

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        x = xs[0].astype(np.float32)
        return (x / (1.0 + np.exp(-x))).astype(np.float32)


def erf(x: np.ndarray) -> np.ndarray:
    """Return erf(x) to within 1.5e-7 (Abramowitz and Stegun 7.1.26)."""
    p, a1, a2, a3, a4, a5 = (
        0.3275911,
        0.254829592,
        -0.284496736,
        1.421413741,
        -1.453152027,
        (1.061405429),
    )
    sign = np.sign(x)
    z = np.abs(x).astype(np.float64)
    t = 1.0 / (1.0 + p * z)
    poly = ((((a5 * t + a4) * t + a3) * t + a2) * t + a1) * t
    return sign * (1.0 - poly * np.exp(-z * z))


@register(Op.GELU, OpClass.ELEMENTWISE, (1, 1))
class Gelu:
    """GELU; attr `approximate` is "none" (erf, BERT) or "tanh" (GPT-2's gelu_new)."""

    cost = staticmethod(pointwise_cost(8))

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        if a.get("approximate", "none") not in ("none", "tanh"):
            raise TypeMismatch(f"approximate must be 'none' or 'tanh', not {a['approximate']!r}")
        return _unary(ins, a)

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        x = xs[0].astype(np.float64)
        if a.get("approximate", "none") == "tanh":
            inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
            return (0.5 * x * (1.0 + np.tanh(inner))).astype(np.float32)
        return (0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))).astype(np.float32)


@register(Op.SOFTMAX, OpClass.ATTENTION, (1, 1))
class Softmax:
    """Numerically stable softmax along attr `axis` (default -1)."""

    cost = staticmethod(pointwise_cost(5))

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        axis_index(int(a.get("axis", -1)), ins[0].rank)
        return _unary(ins, a)

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        x = xs[0].astype(np.float32)
        axis = int(a.get("axis", -1))
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        # a float64 sum: the result depends on neither the summation order nor on padding
        # (a float32 sum of a row changes in 4 of 10 rows when zeros are appended to it)
        total = e.sum(axis=axis, keepdims=True, dtype=np.float64)
        return (e / total).astype(np.float32)


def _norm_infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
    hidden = ins[0].shape[-1]
    for param in ins[1:]:
        if param.rank != 1 or not same_dim(param.shape[0], hidden):
            raise TypeMismatch(f"norm parameter {list(param.shape)} does not match [{hidden}]")
    if float(a["eps"]) <= 0:
        raise TypeMismatch("eps must be positive")
    return _unary(ins, a)


@register(Op.LAYERNORM, OpClass.NORM, (3, 3))
class LayerNorm:
    """(x - mean) / sqrt(var + eps) * w + b over the last axis."""

    infer = staticmethod(_norm_infer)
    cost = staticmethod(pointwise_cost(6))

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        x, w, b = (v.astype(np.float32) for v in xs)
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return ((x - mean) / np.sqrt(var + np.float32(a["eps"])) * w + b).astype(np.float32)


@register(Op.RMSNORM, OpClass.NORM, (2, 2))
class RmsNorm:
    """x / sqrt(mean(x^2) + eps) * w over the last axis (LLaMA)."""

    infer = staticmethod(_norm_infer)
    cost = staticmethod(pointwise_cost(4))

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        x, w = (v.astype(np.float32) for v in xs)
        rms = np.sqrt((x * x).mean(axis=-1, keepdims=True) + np.float32(a["eps"]))
        return (x / rms * w).astype(np.float32)


@register(Op.QUANTIZE, OpClass.ELEMENTWISE, (1, 2))
class Quantize:
    """Quantize symmetrically to attr `bits` (default 8). With one input, one absmax scale per
    token (row over the last axis): s = max|x| / (2^(b-1) - 1), q = round(x / s). With a
    second input, that static scale [1] (calibrated ahead of time) serves the whole tensor and
    q is clipped to +-(2^(b-1) - 1). Scales are `symmetric_scale`'s. The value held is q * s,
    the real number the integer tensor represents."""

    cost = staticmethod(pointwise_cost(3))

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        bits = int(a.get("bits", 8))
        if bits not in (4, 8):
            raise TypeMismatch(f"activation quantization to {bits} bits (4 or 8 supported)")
        if len(ins) == 2 and (ins[1].rank != 1 or not same_dim(ins[1].shape[0], 1)):
            raise TypeMismatch(f"a static quantization scale is [1], got {list(ins[1].shape)}")
        quant = QuantParams(QuantScheme.INT, bits, "tensor" if len(ins) == 2 else "token")
        return TensorType(ins[0].shape, DType.I8 if bits == 8 else DType.I4, quant=quant)

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        qmax = 2 ** (int(a.get("bits", 8)) - 1) - 1
        x = xs[0].astype(np.float32)
        if len(xs) == 2:
            scale = np.float32(xs[1].reshape(()))
        else:
            scale = symmetric_scale(np.abs(x).max(axis=-1, keepdims=True), qmax)
        return (np.clip(np.round(x / scale), -qmax, qmax) * scale).astype(np.float32)


@register(Op.CAST, OpClass.ELEMENTWISE, (1, 1))
class Cast:
    """Round float values to attr `dtype` (f16, bf16 or f32), as a datapath of that precision
    stores them; the values are carried as float32 numbers exactly representable in it."""

    cost = staticmethod(pointwise_cost(0))

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        dtype = parse_dtype(str(a.get("dtype", "")))
        if not dtype.is_float or not ins[0].dtype.is_float:
            raise TypeMismatch(f"cast rounds floats to a float dtype, not {ins[0].dtype}->{dtype}")
        return TensorType(ins[0].shape, dtype)

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        return round_to_dtype(xs[0], parse_dtype(str(a["dtype"])))


# Smallest positive value of each rounded float type (its least subnormal).
TINIEST = {DType.F16: 2.0**-24, DType.BF16: 2.0**-133}


def positive_in_dtype(value: float, dtype: DType) -> float:
    """Return positive `value` rounded to `dtype`, at least that type's smallest positive
    value: a norm eps below FP16's range (BERT's 1e-12) is held as 2^-24, not as 0."""
    return max(float(round_to_dtype(np.float32(value), dtype)), TINIEST.get(dtype, 2.0**-149))


def round_to_dtype(x: np.ndarray, dtype: DType) -> np.ndarray:
    """Return float32 `x` rounded to the nearest value of `dtype` (ties to even)."""
    x = np.asarray(x, dtype=np.float32)
    if dtype is DType.F16:
        with np.errstate(over="ignore"):  # beyond 65504 is +-inf in FP16, as the hardware's
            return x.astype(np.float16).astype(np.float32)
    if dtype is DType.BF16:
        return round_significand(x, 8)
    return x.copy()
