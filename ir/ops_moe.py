"""Mixture-of-experts ops: top-k gating, expert dispatch and expert combine.

A sparse MLP routes every token to k of E experts (Mixtral: 2 of 8):
    gates = topk_gate(router_logits)              [..., E]: softmax over E, the k largest
                                                  kept (renormalised), the others exactly 0
    x_e   = expert_dispatch(x, gates) {expert: e} [R_e, H]: the rows of the tokens routed to e
    y_e   = the expert's own MLP on x_e           [R_e, H]
    y     = expert_combine(gates, y_0, .., y_E-1) [..., H]: sum over e of gates[..., e] * y_e,
                                                  each row back at its token
Dispatch and combine both order an expert's rows as the tokens' row-major order, so they
agree without an index tensor. How many tokens reach expert e is known only at run time: its
rows are the symbolic dimension `R{e}` (`routed_dim`), which the interpreter takes from the
values and estimates bind to a routing assumption (`sparseflow.ir.routing`). Costs therefore
count exactly the work of the tokens an expert receives: an expert no token reaches costs
nothing, and its weights are never read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sparseflow.ir.dims import same_dim
from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
from sparseflow.ir.ops import AttrDict, Cost, Op, OpClass, TypeMismatch, dense_bytes, register
from sparseflow.ir.types import TensorType

Bindings = dict[str, int]
MAX_EXPERTS = 1024  # far above any released MoE (DeepSeek-V3: 256 routed experts)


def routed_dim(expert: int) -> str:
    """Return the symbolic dimension naming the rows routed to `expert`."""
    return f"R{expert}"


def _experts(gates: TensorType) -> int:
    experts = gates.shape[-1]
    if not isinstance(experts, int) or not 1 <= experts <= MAX_EXPERTS:
        raise TypeMismatch(f"gates need a concrete expert axis of 1..{MAX_EXPERTS}, not {experts}")
    return experts


def topk_mask(probs: np.ndarray, k: int) -> np.ndarray:
    """Return a boolean mask of the k largest entries along the last axis (ties: lowest index,
    as `torch.topk` keeps them on CPU)."""
    order = np.argsort(-probs, axis=-1, kind="stable")[..., :k]
    mask = np.zeros(probs.shape, bool)
    np.put_along_axis(mask, order, True, axis=-1)
    return mask


@register(Op.TOPK_GATE, OpClass.ELEMENTWISE, (1, 1))
class TopkGate:
    """Router gates from logits [..., E]: softmax over the experts, keep the attr `k` largest
    probabilities, zero the rest; with attr `normalize` (default true, Mixtral) the kept ones
    are divided by their sum. Cost: softmax (5 per logit), k selection passes, the division."""

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        k = a.get("k")
        experts = _experts(ins[0])
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= experts:
            raise TypeMismatch(f"k must be an integer in 1..{experts}, not {k!r}")
        if not isinstance(a.get("normalize", True), bool):
            raise TypeMismatch("normalize must be true or false")
        return TensorType(ins[0].shape, DType.F32)

    @staticmethod
    def cost(ins: Sequence[TensorType], out: TensorType, a: AttrDict, b: Bindings) -> Cost:
        k = int(a["k"])
        tokens = out.numel(b) // _experts(out)
        flops = (5 + k) * out.numel(b) + (2 * k if a.get("normalize", True) else 0) * tokens
        return Cost(flops, (dense_bytes(ins[0], b),), dense_bytes(out, b))

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        logits = xs[0].astype(np.float32)
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs = e / e.sum(axis=-1, keepdims=True)
        kept = np.where(topk_mask(probs, int(a["k"])), probs, np.float32(0))
        if a.get("normalize", True):
            kept = kept / kept.sum(axis=-1, keepdims=True)
        return kept.astype(np.float32)


@register(Op.EXPERT_DISPATCH, OpClass.DATA, (2, 2))
class ExpertDispatch:
    """Gather the rows of x [..., H] whose gate for attr `expert` is non-zero: [R_e, H].

    Cost: the gathered rows are read and written; the routing itself (which rows) comes
    from the gates that `topk_gate` wrote.
    """

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        x, gates = ins
        expert = a.get("expert")
        experts = _experts(gates)
        tokens_x, tokens_g = x.shape[:-1], gates.shape[:-1]
        if len(tokens_x) != len(tokens_g) or not all(map(same_dim, tokens_x, tokens_g)):
            raise TypeMismatch(f"x {list(x.shape)} and gates {list(gates.shape)} differ in tokens")
        if isinstance(expert, bool) or not isinstance(expert, int) or not 0 <= expert < experts:
            raise TypeMismatch(f"expert must be an integer in 0..{experts - 1}, not {expert!r}")
        return x.with_(shape=(routed_dim(expert), x.shape[-1]))

    @staticmethod
    def cost(ins: Sequence[TensorType], out: TensorType, a: AttrDict, b: Bindings) -> Cost:
        rows = dense_bytes(out, b)
        return Cost(0, (rows, 0), rows)

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        x, gates = xs
        routed = gates.reshape(-1, gates.shape[-1])[:, int(a["expert"])] != 0
        return np.ascontiguousarray(x.reshape(-1, x.shape[-1])[routed])


@register(Op.EXPERT_COMBINE, OpClass.ELEMENTWISE, (2, 1 + MAX_EXPERTS))
class ExpertCombine:
    """Combine the experts' outputs: gates [..., E] and y_e [R_e, H] for every expert e in
    order give [..., H], each token's sum of gates[..., e] * its row of y_e (0 where no expert
    took it). Cost: a multiply-add per routed row element."""

    @staticmethod
    def infer(ins: Sequence[TensorType], a: AttrDict) -> TensorType:
        gates, outputs = ins[0], ins[1:]
        if len(outputs) != _experts(gates):
            raise TypeMismatch(f"{len(outputs)} expert outputs for {gates.shape[-1]} gates")
        hidden = outputs[0].shape[-1]
        for e, y in enumerate(outputs):
            if y.rank != 2 or not same_dim(y.shape[-1], hidden):
                raise TypeMismatch(f"expert {e} output {list(y.shape)} is not [rows, {hidden}]")
        return TensorType((*gates.shape[:-1], hidden), DType.F32)

    @staticmethod
    def cost(ins: Sequence[TensorType], out: TensorType, a: AttrDict, b: Bindings) -> Cost:
        routed = sum(y.numel(b) for y in ins[1:])
        reads = tuple(dense_bytes(t, b) for t in ins)
        return Cost(2 * routed, reads, dense_bytes(out, b))

    @staticmethod
    def reference(xs: list[np.ndarray], a: AttrDict) -> np.ndarray:
        gates, outputs = xs[0], xs[1:]
        flat = gates.reshape(-1, gates.shape[-1]).astype(np.float32)
        out = np.zeros((flat.shape[0], outputs[0].shape[-1]), np.float32)
        for e, y in enumerate(outputs):
            rows = np.flatnonzero(flat[:, e])
            if len(rows) != len(y):
                raise InputError(f"expert {e}: {len(y)} output rows for {len(rows)} routed tokens")
            out[rows] += flat[rows, e, None] * y.astype(np.float32)
        return out.reshape(*gates.shape[:-1], out.shape[-1])
