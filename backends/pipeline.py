"""The compile and run pipelines behind `sparseflow compile` and `sparseflow run`.

compile: model source -> dense graphs -> recipe (both phases, one calibration) -> the target's
backend -> DIR/graph, DIR/program (+ target files), DIR/report.json.
run: the same, then one request (prefill + greedy decode) on the backend's runners, with the
logits compared against the numpy reference of the same compressed graph (kernel correctness)
and of the uncompressed graph (compression error), all fed the backend's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparseflow.backends.memory import check_capacity
from sparseflow.backends.registry import CompileRequest, compile_model, has_backend
from sparseflow.backends.runner import (
    Generation,
    generate,
    generate_reference,
    prompt_ids,
    rel_error,
)
from sparseflow.hw_models.schema import HardwareModel, Kind
from sparseflow.ir.errors import InputError
from sparseflow.ir.fileio import dumps_strict
from sparseflow.ir.formats import PackedWeight, stored_mask
from sparseflow.ir.graph import Graph
from sparseflow.ir.models.random_weights import random_weights
from sparseflow.ir.models.zoo import load_config, load_model
from sparseflow.ir.ops import Op, storage_bytes
from sparseflow.passes.manager import PassContext
from sparseflow.passes.recipe import Recipe


@dataclass(frozen=True)
class ModelPair:
    """A model's prefill and decode graphs (decode None for encoders), dense and compressed."""

    dense_prefill: Graph
    dense_decode: Graph | None
    prefill: Graph
    decode: Graph | None


def is_encoder(source: str) -> bool:
    """Return whether a model source is an encoder (BERT: no decode phase)."""
    try:
        return load_config(source).family == "bert"
    except InputError:
        return False  # a graph file: load_model reports its own problems


def compress_model(
    source: str,
    recipe: Recipe,
    batch: int,
    functional: bool,
    ctx: PassContext | None = None,
) -> ModelPair:
    """Load both phases of `source` and apply `recipe`; with `functional`, shape-only models
    get seeded random weights (DESIGN.md) so that they can run."""
    prefill = load_model(source, "prefill", batch)
    decode = None if is_encoder(source) else load_model(source, "decode", batch)
    prefill.weights.check_finite()
    if functional and not prefill.weights:
        prefill = random_weights(prefill)
        decode = decode and random_weights(decode)
    compressed = recipe.apply_model(prefill, decode, ctx)
    return ModelPair(prefill, decode, *compressed)


def layer_report(dense: Graph, compressed: Graph) -> list[dict]:
    """Return one entry per weight: name, shape, density, bits, weight_bytes, rel_error (and a
    `note` where a quantizer fell back from the group size it was asked for)."""
    rows = []
    for node in compressed.nodes_of(Op.WEIGHT):
        t = node.type
        row = {
            "name": node.name,
            "role": node.attr("role"),
            "shape": [int(d) for d in t.shape],
            "density": t.sparse.density if t.sparse else 1.0,
            "bits": t.quant.bits if t.quant else t.dtype.bits,
            "format": " ".join(str(x) for x in (t.sparse, t.quant) if x) or str(t.dtype),
            "weight_bytes": storage_bytes(t),
        }
        fallback = node.attr("group_fallback")
        if fallback:
            row["note"] = (
                f"group size {fallback} does not divide K = {t.shape[1]}: one group per row"
            )
        if node.name in compressed.weights:
            row.update(_measured(dense, compressed, node.name))
        rows.append(row)
    return rows


def _measured(dense: Graph, compressed: Graph, name: str) -> dict:
    if name not in dense.weights:  # made by a pass (a calibrated scale): nothing to compare
        return {}
    value = compressed.weights[name]
    if not isinstance(value, PackedWeight):
        return {"rel_error": 0.0} if value is dense.weights[name] else _error(dense, name, value)
    out = {"weight_bytes": value.nbytes, **_error(dense, name, value.to_dense())}
    if value.type.sparse is not None:
        out["density"] = float(stored_mask(value).mean())
    return out


def _error(dense: Graph, name: str, values: np.ndarray) -> dict:
    return {"rel_error": rel_error(np.asarray(values, np.float32), dense.weights.dense(name))}


def compile_report(model: str, hw: HardwareModel, recipe: Recipe, pair: ModelPair) -> dict:
    """Return report.json's content without the program (weights and layers)."""
    layers = layer_report(pair.dense_prefill, pair.prefill)
    dense_bytes = sum(storage_bytes(n.type) for n in pair.dense_prefill.nodes_of(Op.WEIGHT))
    total = sum(row["weight_bytes"] for row in layers)
    return {
        "model": model,
        "target": hw.name,
        "recipe": recipe.name,
        "weight_bytes": total,
        "dense_weight_bytes": dense_bytes,
        "compression_ratio": dense_bytes / total if total else 0.0,
        "layers": layers,
    }


def compile_to_dir(
    model: str,
    hw: HardwareModel,
    recipe: Recipe,
    out_dir: Path,
    request: dict,
    ctx: PassContext | None = None,
) -> dict:
    """Compile `model` for `hw` into `out_dir`; return the report written there.

    `request` holds batch, prompt_len and gen_len (they size the FPGA's length buckets).
    """
    pair = compress_model(model, recipe, request["batch"], functional=False, ctx=ctx)
    check_memory(hw, pair, request)
    report = compile_report(model, hw, recipe, pair)
    out_dir.mkdir(parents=True, exist_ok=True)
    graph_text = "\n".join(str(g) for g in (pair.prefill, pair.decode) if g is not None)
    (out_dir / "graph").write_text(graph_text + "\n")
    files = [out_dir / "graph"]
    if has_backend(hw.kind):
        compiled = compile_model(CompileRequest(pair.prefill, pair.decode, hw, **request))
        files += compiled.write(out_dir)
        report["program"] = compiled.summary()
        if getattr(compiled, "resources", None) is not None:  # fpga: the design's resources
            report["resources"] = compiled.resources.to_dict()
    else:
        report["program"] = None
        report["note"] = f"no {hw.kind} backend is built yet: graph and weights only"
    report["files"] = [str(p.relative_to(out_dir)) for p in files] + ["report.json"]
    (out_dir / "report.json").write_text(dumps_strict(report, "report.json") + "\n")
    return report


def run_request(
    model: str, hw: HardwareModel, recipe: Recipe, request: dict, ctx: PassContext, progress: bool
) -> dict:
    """Run one request on `hw`'s backend; return the run report (DESIGN.md `run`)."""
    pair = compress_model(model, recipe, request["batch"], functional=True, ctx=ctx)
    check_memory(hw, pair, request)
    vocab = int(pair.prefill.meta_dict.get("vocab_size", 0))
    ids = prompt_ids(vocab, request["batch"], request["prompt_len"], ctx.seed)
    gen_len = request["gen_len"]
    compiled = None
    if has_backend(hw.kind):
        compiled = compile_model(CompileRequest(pair.prefill, pair.decode, hw, **request))
        runners = compiled.runners()
        backend = generate(*runners, pair.prefill, ids, gen_len, progress=progress)
        ref = generate_reference(pair.prefill, pair.decode, ids, gen_len, forced=backend.tokens)
    else:
        backend = ref = generate_reference(pair.prefill, pair.decode, ids, gen_len, None, progress)
    dense = generate_reference(
        pair.dense_prefill, pair.dense_decode, ids, gen_len, forced=backend.tokens
    )
    for label, run in (("the target", backend), ("the reference", ref), ("the dense model", dense)):
        if not np.isfinite(run.all_logits()).all():
            raise InputError(
                f"{model}: the logits of {label} are not finite: the weights overflow the "
                f"arithmetic (largest |weight| {_largest_weight(pair.dense_prefill)})"
            )
    return {
        "model": model,
        "target": hw.name,
        "recipe": recipe.name,
        "executor": str(hw.kind) if compiled else "reference",
        "batch": request["batch"],
        "prompt_len": request["prompt_len"],
        "gen_len": gen_len,
        "tokens": backend.tokens.tolist(),
        "logits_rel_error_vs_reference": rel_error(backend, ref) if compiled else None,
        "logits_rel_error_vs_dense": rel_error(backend, dense),
        "tokens_per_s": _tokens_per_s(backend, ids, pair.decode is None),
        "prefill_s": backend.prefill_s,
        "decode_s": backend.decode_s,
        "program": compiled.summary() if compiled else None,
        # FPGA: the instructions the instruction-set simulator executed (every program run)
        "instructions_executed": getattr(runners[0], "instructions_executed", None)
        if compiled
        else None,
    }


def check_memory(hw: HardwareModel, pair: ModelPair, request: dict) -> None:
    """Raise InputError when the compressed weights and the KV cache overflow the device."""
    if pair.decode is None or hw.kind is Kind.FPGA:  # the FPGA layout checks its HBM itself
        return
    check_capacity(hw, pair.decode, request["prompt_len"] + max(request["gen_len"], 1))


def _largest_weight(graph: Graph) -> str:
    """Return `value in name` for the weight of largest magnitude."""
    peaks = {name: float(np.abs(graph.weights.dense(name)).max()) for name in graph.weights}
    name = max(peaks, key=peaks.get)
    return f"{peaks[name]:.3g} in {name}"


def _tokens_per_s(gen: Generation, ids: np.ndarray, encoder: bool) -> float | None:
    """Return decode tokens per second (None when no decode step ran), or prompt tokens per
    second for an encoder."""
    if encoder:
        return ids.size / gen.prefill_s if gen.prefill_s > 0 else None
    return gen.decode_tokens_per_s if len(gen.logits) > 1 else None
