"""Ops with a reduction or a lookup: embedding, linear, matmul, RoPE and the attention masks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sparseflow.ir.dims import eval_dim, same_dim
from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
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
from sparseflow.ir.ops_math import pointwise_cost
from sparseflow.ir.types import TensorType

Bindings = dict[str, int]


@register(Op.EMBEDDING, OpClass.EMBEDDING, (2, 2))
class Embedding:
    """Look up rows of table [V, H] by integer ids (plus attr `offset`, default 0): the output
    is ids.shape + [H]."""

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        ids, table = ins
        if ids.dtype.is_float or table.rank != 2:
            raise TypeMismatch("embedding takes integer ids and a [vocab, hidden] table")
        return TensorType((*ids.shape, table.shape[1]), DType.F32)

    @staticmethod
    def cost(ins: Sequence[TensorType], out: TensorType, a: AttrDict, b: Bindings) -> Cost:
        ids, table = ins
        row_bytes = storage_bytes(table, b) // max(1, table.numel(b)) * table.shape[1]
        return Cost(0, (dense_bytes(ids, b), row_bytes * ids.numel(b)), dense_bytes(out, b))

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        ids, table = xs
        index = ids.astype(np.int64) + int(a.get("offset", 0))
        if index.size and (index.min() < 0 or index.max() >= table.shape[0]):
            raise InputError(f"token id out of range for a table of {table.shape[0]} rows")
        return table[index].astype(np.float32)


@register(Op.LINEAR, OpClass.LINEAR, (2, 3))
class Linear:
    """y = x @ w^T (+ bias): x [..., K], w [N, K] (possibly sparse / quantized), bias [N]."""

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        x, w = ins[0], ins[1]
        if w.rank != 2 or not same_dim(x.shape[-1], w.shape[1]):
            raise TypeMismatch(f"x {list(x.shape)} does not match weight {list(w.shape)}")
        if len(ins) == 3 and (ins[2].rank != 1 or not same_dim(ins[2].shape[0], w.shape[0])):
            raise TypeMismatch(f"bias {list(ins[2].shape)} does not match [{w.shape[0]}]")
        return TensorType((*x.shape[:-1], w.shape[0]), DType.F32)

    @staticmethod
    def cost(ins: Sequence[TensorType], out: TensorType, a: AttrDict, b: Bindings) -> Cost:
        x, w = ins[0], ins[1]
        density = w.sparse.density if w.sparse else 1.0
        flops = round(2 * out.numel(b) * eval_dim(x.shape[-1], b) * density)
        reads = (dense_bytes(x, b), storage_bytes(w, b), *(storage_bytes(t, b) for t in ins[2:]))
        return Cost(flops, reads, dense_bytes(out, b))

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        x = np.asarray(xs[0], np.float32)
        w = xs[1]
        y = exact_dot(x.reshape(-1, x.shape[-1]), w).reshape(*x.shape[:-1], w.shape[0])
        if len(xs) == 3:
            y = y + xs[2]
        return y.astype(np.float32)


# Weight rows converted to float64 at a time by `exact_dot` (64 MiB at K = 4096).
EXACT_DOT_ELEMENTS = 1 << 23


def exact_dot(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Return x [M, K] @ w [N, K]^T accumulated in float64 and rounded once to float32.

    Products of float32 numbers are exact in float64 and their sums nearly so, so the result
    is the exact dot product of the operands rounded once, whatever the summation order: what
    an accelerator summing integer codes exactly and dequantizing once computes
    (`ir.dtypes.symmetric_scale`). A float32 BLAS misses some sums by a few ulps (its order
    is its own), and after the FP16 rounding and INT8 quantization of the next layer's input
    such a miss can move a code by one: in a 768-wide 12-layer INT8 graph those moves alone
    changed the logits by 1e-2.
    """
    x64 = np.asarray(x, np.float64)
    out = np.empty((x.shape[0], w.shape[0]), np.float32)
    rows = max(1, EXACT_DOT_ELEMENTS // max(1, w.shape[1]))
    for r in range(0, w.shape[0], rows):
        out[:, r : r + rows] = x64 @ np.asarray(w[r : r + rows], np.float64).T
    return out


@register(Op.MATMUL, OpClass.ATTENTION, (2, 2))
class Matmul:
    """Batched a @ b (a [..., M, K], b [..., K, N]), or a @ b^T with attr `transpose_b`;
    summed in float64 and rounded once to float32, as `exact_dot`."""

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        x, y = ins
        y_shape = list(y.shape)
        if a.get("transpose_b", False):
            y_shape[-2], y_shape[-1] = y_shape[-1], y_shape[-2]
        batch_ok = x.rank == y.rank and all(
            same_dim(p, q) for p, q in zip(x.shape[:-2], y_shape[:-2], strict=True)
        )
        if x.rank < 2 or not batch_ok or not same_dim(x.shape[-1], y_shape[-2]):
            raise TypeMismatch(f"matmul of {list(x.shape)} and {y_shape}")
        return TensorType((*x.shape[:-1], y_shape[-1]), DType.F32)

    @staticmethod
    def cost(ins: Sequence[TensorType], out: TensorType, a: AttrDict, b: Bindings) -> Cost:
        flops = 2 * out.numel(b) * eval_dim(ins[0].shape[-1], b)
        return Cost(flops, tuple(dense_bytes(t, b) for t in ins), dense_bytes(out, b))

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        x, y = (np.asarray(v, np.float32).astype(np.float64) for v in xs)
        if a.get("transpose_b", False):
            y = np.swapaxes(y, -1, -2)
        return np.matmul(x, y).astype(np.float32)


def rope_tables(positions: np.ndarray, rotary_dim: int, theta: float) -> tuple[np.ndarray, ...]:
    """Return (cos, sin) [T, rotary_dim] of the rotate-half RoPE (LLaMA / GPT-NeoX layout)."""
    inv_freq = 1.0 / theta ** (np.arange(0, rotary_dim, 2, dtype=np.float32) / rotary_dim)
    angles = positions.astype(np.float32)[:, None] * inv_freq[None, :]
    angles = np.concatenate([angles, angles], axis=-1)
    return np.cos(angles), np.sin(angles)


@register(Op.ROPE, OpClass.ELEMENTWISE, (2, 2))
class Rope:
    """Rotary position embedding of x [B, H, T, D] at positions [T]: the first `rotary_dim`
    features (default D) become x*cos + rotate_half(x)*sin; attr `theta` is the base."""

    cost = staticmethod(pointwise_cost(3))

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        x, pos = ins
        rotary = a.get("rotary_dim")
        if x.rank != 4 or pos.rank != 1 or not same_dim(pos.shape[0], x.shape[2]):
            raise TypeMismatch(f"rope takes x [B, H, T, D] and positions [T], got {x}, {pos}")
        if rotary is not None and (int(rotary) % 2 or int(rotary) > int(x.shape[3])):
            raise TypeMismatch(f"rotary_dim {rotary} must be even and <= head_dim")
        return x.with_(dtype=DType.F32, sparse=None, quant=None)

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        x, pos = xs[0].astype(np.float32), xs[1]
        rotary = int(a.get("rotary_dim") or x.shape[-1])
        cos, sin = rope_tables(pos, rotary, float(a["theta"]))
        rot, rest = x[..., :rotary], x[..., rotary:]
        half = rotary // 2
        rotated = np.concatenate([-rot[..., half:], rot[..., :half]], axis=-1)
        out = rot * cos + rotated * sin
        return np.concatenate([out, rest], axis=-1).astype(np.float32)


@register(Op.CAUSAL_MASK, OpClass.ATTENTION, (2, 2))
class CausalMask:
    """Mask attention scores [B, H, T, S]: key j is hidden from query t when j > pos[t]
    (the key's absolute position is its index in the cache). Masked scores become the most
    negative float32, as the Hugging Face models do."""

    cost = staticmethod(pointwise_cost(1))

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        scores, pos = ins
        if scores.rank != 4 or pos.rank != 1 or not same_dim(pos.shape[0], scores.shape[2]):
            raise TypeMismatch("causal_mask takes scores [B, H, T, S] and positions [T]")
        return scores

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        scores, pos = xs
        keys = np.arange(scores.shape[-1])
        hidden = keys[None, :] > pos.astype(np.int64)[:, None]
        return np.where(hidden, np.finfo(np.float32).min, scores).astype(np.float32)


@register(Op.SLIDING_WINDOW_MASK, OpClass.ATTENTION, (2, 2))
class SlidingWindowMask:
    """Mask attention scores [B, H, T, S] to a causal window of attr `window` keys: key j is
    hidden from query t when j > pos[t] or j <= pos[t] - window (Mistral; Hugging Face's
    `sliding_window_overlay`). Masked scores become the most negative float32."""

    cost = staticmethod(pointwise_cost(1))

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        window = a.get("window")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise TypeMismatch(f"window must be an integer >= 1, not {window!r}")
        return CausalMask.infer(ins, a)

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        scores, pos = xs
        keys = np.arange(scores.shape[-1])[None, :]
        queries = pos.astype(np.int64)[:, None]
        hidden = (keys > queries) | (keys <= queries - int(a["window"]))
        return np.where(hidden, np.finfo(np.float32).min, scores).astype(np.float32)


@register(Op.DECODE_ATTENTION, OpClass.ATTENTION, (4, 4))
class DecodeAttention:
    """Attention of one query token over a KV cache, fused (`backends.gpu.fusion` forms it):
    q [B, H, 1, D], keys and values [B, Hkv, S, D] shared by `n_rep` query heads each, pos [1];
    keys past pos[0] are masked. The reference runs the references of the ops it replaces:
    repeat_kv, matmul (q k^T), scale by attr `scale`, causal_mask, softmax, matmul with v."""

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        q, k, v, pos = ins
        n_rep = int(a["n_rep"])
        if q.rank != 4 or k.rank != 4 or k.shape != v.shape or pos.rank != 1:
            raise TypeMismatch("decode_attention takes q [B,H,1,D], k, v [B,Hkv,S,D], pos [1]")
        heads, kv_heads = q.shape[1], k.shape[1]
        if isinstance(kv_heads, int) and not same_dim(heads, kv_heads * n_rep):
            raise TypeMismatch(f"{heads} query heads != {kv_heads} KV heads x {n_rep}")
        return TensorType(q.shape, DType.F32)

    @staticmethod
    def cost(ins: Sequence[TensorType], out: TensorType, a: AttrDict, b: Bindings) -> Cost:
        q, k = ins[0], ins[1]
        keys = eval_dim(k.shape[2], b)
        flops = 4 * q.numel(b) * keys  # q k^T and p v: 2 FLOPs per multiply-add each
        return Cost(flops, tuple(dense_bytes(t, b) for t in ins), dense_bytes(out, b))

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        q, k, v, pos = xs
        repeat = Op.REPEAT_KV.reference
        k, v = repeat([k], {"n_rep": a["n_rep"]}), repeat([v], {"n_rep": a["n_rep"]})
        scores = Op.MATMUL.reference([q, k], {"transpose_b": True})
        scores = Op.SCALE.reference([scores], {"factor": a["scale"]})
        scores = Op.CAUSAL_MASK.reference([scores, pos], {})
        probs = Op.SOFTMAX.reference([scores], {"axis": -1})
        return Op.MATMUL.reference([probs, v], {})
