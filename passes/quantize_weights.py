"""Weight quantization passes: INT8, group-wise INT4 (RTN or GPTQ), LLM.int8(), FP4, OliVe.

Requires: the selected weights are linear weights, float (dense or already sparse), not yet
quantized. Ensures: each is stored as integer/FP4 codes plus scales in its sparse layout (the
keep-mask of a sparse weight is preserved exactly), and its node's type carries the dtype and
QuantParams; shape-only graphs get the type alone. Passes that need activations (GPTQ,
LLM.int8 outlier columns, the FP4 bias search) calibrate on the prefill graph
(`passes.calibration`). The algorithms live in passes/quantize.py and passes/quant_*.py.

IR before -> after (quantize_int4, group 128, asymmetric):
    %layers.0.mlp.up_proj : f32[11008,4096] = weight() {"role": "linear"}
    %layers.0.mlp.up_proj : u4[11008,4096] q=int4:group:g128:asym = weight() {"role": "linear"}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache

import numpy as np

from sparseflow.ir.dims import eval_dim
from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import PackedWeight, QuantCodes, pack_weight, stored_mask
from sparseflow.ir.graph import Graph
from sparseflow.ir.node import make_attrs
from sparseflow.ir.types import QuantParams, QuantScheme, TensorType
from sparseflow.ir.weights import WeightValue
from sparseflow.passes import quantize
from sparseflow.passes.calibration import linear_inputs
from sparseflow.passes.manager import PassContext, register_pass
from sparseflow.passes.quant_fp4 import quantize_fp4_fixed, quantize_fp4_searched
from sparseflow.passes.quant_gptq import gptq_hessian, quantize_gptq
from sparseflow.passes.quant_llm_int8 import LLM_INT8_THRESHOLD, outlier_columns, quantize_llm_int8
from sparseflow.passes.quant_olive import quantize_olive
from sparseflow.passes.weights import dense_values, rewrite_weights

# (name, dense W, keep-mask or None, calibration inputs or None) -> codes
Quantizer = Callable[[str, np.ndarray, np.ndarray | None, np.ndarray | None], QuantCodes]


@dataclass(frozen=True)
class Scheme:
    """What a pass stores: dtype and parameters, and whether it needs calibration or density."""

    dtype: DType
    params: QuantParams
    calibrated: bool = False
    dense_only: bool = False
    fit_group: bool = False

    def target_type(self, name: str, tensor_type: TensorType) -> TensorType:
        """Return the quantized type of weight `name`; InputError when it cannot be stored.

        With `fit_group`, a layer whose K the group size does not divide gets one group per
        row (per-channel scales) instead of an error."""
        if tensor_type.quant is not None:
            raise InputError(f"layer {name!r} is already quantized ({tensor_type.quant})")
        if self.dense_only and tensor_type.sparse is not None:
            raise InputError(
                f"layer {name!r}: {self.params} stores dense weights only, this one is sparse "
                f"({tensor_type.sparse})"
            )
        k = eval_dim(tensor_type.shape[1], {})
        group = self.params.group_size
        params = self.params
        if group and k % group and self.fit_group:
            params = replace(params, granularity="channel", group_size=0)
        elif group and k % group:
            raise InputError(f"option 'group_size' {group} does not divide K = {k} of {name!r}")
        return tensor_type.with_(dtype=self.dtype, quant=params)


def _quantize(
    graph: Graph, layers: tuple[str, ...], ctx: PassContext, scheme: Scheme, fn: Quantizer
) -> Graph:
    @cache
    def calibration() -> dict[str, np.ndarray]:
        return linear_inputs(graph, layers, ctx)

    def new_value(name: str, value: WeightValue) -> PackedWeight:
        scheme.target_type(name, graph.node(name).type)  # validates before any work
        sparse = value.type.sparse if isinstance(value, PackedWeight) else None
        mask = stored_mask(value) if sparse else None
        x = calibration()[name] if scheme.calibrated else None
        codes = fn(name, dense_values(value), mask, x)
        block_n = value.arrays.get("block_n") if sparse else None
        return pack_weight(codes, sparse, mask, block_n)

    return rewrite_weights(graph, layers, ctx, new_value, scheme.target_type)


@dataclass(frozen=True)
class NoOptions:
    """This pass has no options."""


@register_pass("quantize_int8", NoOptions)
def quantize_int8(
    graph: Graph, layers: tuple[str, ...], ctx: PassContext, opts: NoOptions
) -> Graph:
    """Quantize weights to symmetric INT8 with one scale per output channel."""
    scheme = Scheme(DType.I8, QuantParams(QuantScheme.INT, 8, "channel"))
    return _quantize(
        graph, layers, ctx, scheme, lambda n, w, m, x: quantize.quantize_int8_per_channel(w)
    )


@dataclass(frozen=True)
class Int4Options:
    """group_size: weights per scale along K (an integer, or "channel" for one per row);
    method: "rtn" (round to nearest) or "gptq" (Hessian from calibration inputs);
    symmetric: absmax scales without zero points (else min-max with zero points);
    fit_group: a layer whose K the group size does not divide (K = 64 with groups of 128)
    gets one group per row, as GPTQ and AWQ tools do, and its weight node is marked
    `group_fallback` (else such a layer is an error)."""

    group_size: int | str = 128
    method: str = "rtn"
    symmetric: bool = False
    fit_group: bool = False

    def __post_init__(self) -> None:
        if self.group_size != "channel" and not (
            isinstance(self.group_size, int) and self.group_size >= 1
        ):
            raise ValueError(
                f"option 'group_size' must be >= 1 or 'channel', got {self.group_size}"
            )
        if self.method not in ("rtn", "gptq"):
            raise ValueError(f"option 'method' must be 'rtn' or 'gptq', got {self.method!r}")

    @property
    def group(self) -> int | None:
        """Return the group size, None meaning one group per row."""
        return None if self.group_size == "channel" else int(self.group_size)


@register_pass("quantize_int4", Int4Options)
def quantize_int4(
    graph: Graph, layers: tuple[str, ...], ctx: PassContext, opts: Int4Options
) -> Graph:
    """Quantize weights to group-wise INT4 by round-to-nearest or GPTQ."""
    granularity = "channel" if opts.group is None else "group"
    params = QuantParams(QuantScheme.INT, 4, granularity, opts.group or 0, opts.symmetric)
    dtype = DType.I4 if opts.symmetric else DType.U4
    scheme = Scheme(dtype, params, calibrated=opts.method == "gptq", fit_group=opts.fit_group)

    def group(w: np.ndarray) -> int | None:
        return opts.group if opts.group and w.shape[1] % opts.group == 0 else None

    def rtn(name: str, w: np.ndarray, mask: np.ndarray | None, x: np.ndarray | None) -> QuantCodes:
        return quantize.quantize_int4_rtn(w, group(w), opts.symmetric)

    def gptq(name: str, w: np.ndarray, mask: np.ndarray | None, x: np.ndarray | None) -> QuantCodes:
        return quantize_gptq(w, gptq_hessian(x), group(w), mask=mask, symmetric=opts.symmetric)

    result = _quantize(graph, layers, ctx, scheme, gptq if opts.method == "gptq" else rtn)
    return _mark_group_fallback(result, layers, opts.group)


def _mark_group_fallback(graph: Graph, layers: tuple[str, ...], group: int | None) -> Graph:
    """Mark the selected weights that fell back to one group per row with the group size
    they were asked for (attribute `group_fallback`), so reports can say so."""
    if group is None:
        return graph
    chosen = set(layers)
    nodes = [
        replace(n, attrs=make_attrs({**n.attr_dict, "group_fallback": group}))
        if n.name in chosen and n.type.quant and n.type.quant.group_size != group
        else n
        for n in graph.nodes
    ]
    return graph.with_nodes(nodes)


@dataclass(frozen=True)
class LlmInt8Options:
    """threshold: activation magnitude from which a feature column is an outlier (fp16)."""

    threshold: float = LLM_INT8_THRESHOLD

    def __post_init__(self) -> None:
        if not self.threshold > 0:
            raise ValueError(f"option 'threshold' must be positive, got {self.threshold}")


@register_pass("quantize_llm_int8", LlmInt8Options)
def quantize_llm_int8_pass(
    graph: Graph, layers: tuple[str, ...], ctx: PassContext, opts: LlmInt8Options
) -> Graph:
    """Quantize weights vector-wise to INT8 with fp16 copies of calibrated outlier columns."""
    scheme = Scheme(
        DType.I8, QuantParams(QuantScheme.LLM_INT8, 8, "channel"), calibrated=True, dense_only=True
    )
    return _quantize(
        graph,
        layers,
        ctx,
        scheme,
        lambda n, w, m, x: quantize_llm_int8(w, outlier_columns(x, opts.threshold)),
    )


@dataclass(frozen=True)
class Fp4Options:
    """search: pick each channel's exponent bias by output error on calibration inputs
    (LLM-FP4); false: the fixed OCP MX E2M1 bias."""

    search: bool = True


@register_pass("quantize_fp4", Fp4Options)
def quantize_fp4(
    graph: Graph, layers: tuple[str, ...], ctx: PassContext, opts: Fp4Options
) -> Graph:
    """Quantize weights to FP4 (E2M1) with a per-channel exponent bias."""
    scheme = Scheme(DType.FP4, QuantParams(QuantScheme.FP4, 4, "channel"), calibrated=opts.search)

    def fp4(name: str, w: np.ndarray, mask: np.ndarray | None, x: np.ndarray | None) -> QuantCodes:
        return quantize_fp4_searched(w, x) if opts.search else quantize_fp4_fixed(w)

    return _quantize(graph, layers, ctx, scheme, fp4)


@register_pass("quantize_olive", NoOptions)
def quantize_olive_pass(
    graph: Graph, layers: tuple[str, ...], ctx: PassContext, opts: NoOptions
) -> Graph:
    """Quantize weights to OliVe outlier-victim pairs (4 bits per weight)."""
    scheme = Scheme(DType.I4, QuantParams(QuantScheme.OLIVE, 4, "channel"), dense_only=True)
    return _quantize(graph, layers, ctx, scheme, lambda n, w, m, x: quantize_olive(w))
