"""One design point: a model compressed by a recipe, estimated on a hardware model.

`compress` is the expensive step a sweep shares between hardware points; `estimate` of a
compressed model on a target is one design point. Both take plain values (names, paths,
numbers, hardware models or their plain data) and return plain records; `sparseflow.api`
and the design-space explorer are built on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparseflow.backends.outdir import check_output_file
from sparseflow.backends.pipeline import is_encoder
from sparseflow.backends.runner import check_request
from sparseflow.hw_models.loader import hw_from_dict, load_hw, with_overrides
from sparseflow.hw_models.schema import FpgaModel, HardwareModel, Kind
from sparseflow.ir.errors import InputError
from sparseflow.ir.fileio import non_finite_path
from sparseflow.ir.graph import Graph, shape_only
from sparseflow.ir.models.zoo import load_config, load_model
from sparseflow.passes.manager import PassContext
from sparseflow.passes.recipe import Recipe, load_recipe, shorthand_recipe
from sparseflow.simulator.estimate import Workload, estimate_analytical
from sparseflow.simulator.fpga_estimate import estimate_fpga


@dataclass(frozen=True)
class Request:
    """One request: sequences per batch, prompt tokens, generated tokens."""

    batch: int = 1
    prompt_len: int = 128
    gen_len: int = 128

    def as_dict(self) -> dict[str, int]:
        """Return the request as the backends take it."""
        return {"batch": self.batch, "prompt_len": self.prompt_len, "gen_len": self.gen_len}


@dataclass(frozen=True)
class CompressedModel:
    """A model's graphs after a recipe: shape-only for estimates, with weights for runs."""

    model: str
    recipe: Recipe
    prefill: Graph
    decode: Graph | None
    batch: int
    prompt_len: int


def load_target(
    name_or_spec: str | Path | HardwareModel | Mapping, overrides: Mapping = ()
) -> HardwareModel:
    """Return a validated hardware model: a preset name, a YAML path, a model, or plain data
    (as `hw_to_dict` gives), with dotted-field `overrides` applied and re-validated."""
    if isinstance(name_or_spec, HardwareModel):
        hw = name_or_spec
    elif isinstance(name_or_spec, Mapping):
        hw = hw_from_dict(dict(name_or_spec))
    else:
        hw = load_hw(name_or_spec)
    return with_overrides(hw, dict(overrides)) if overrides else hw


def make_recipe(
    name: str | Recipe | None,
    default: str = "dense",
    sparsity: str | None = None,
    quant: str | None = None,
) -> Recipe:
    """Return the recipe named (or given), extended by the `--sparsity`/`--quant` shorthands.

    With a shorthand and no recipe the shorthand alone is the recipe; with neither, `default`.
    """
    base = load_recipe(name) if isinstance(name, str) else name
    if sparsity or quant:
        return shorthand_recipe(sparsity, quant, base)
    return base or load_recipe(default)


def check_fits_model(model: str, request: Request, min_gen_len: int = 0) -> None:
    """Check a request's sizes, and that prompt + generated tokens fit the model's positions."""
    check_request(request.batch, request.prompt_len, request.gen_len, min_gen_len)
    try:
        config = load_config(model)
    except InputError:
        return  # a graph file carries no config; its graphs check their own shapes
    total = request.prompt_len + request.gen_len
    if total > config.max_positions:
        raise InputError(
            f"--prompt {request.prompt_len} + --gen {request.gen_len} = {total} tokens exceed "
            f"{config.name}'s max_position_embeddings ({config.max_positions})"
        )


def compress(
    model: str,
    recipe: str | Recipe | None = None,
    *,
    target: str | HardwareModel | None = None,
    sparsity: str | None = None,
    quant: str | None = None,
    batch: int = 1,
    prompt_len: int = 128,
    context: PassContext | None = None,
) -> CompressedModel:
    """Return `model`'s shape-only graphs compressed by the recipe (the target's default when
    none is named), for requests of `batch` x `prompt_len` tokens."""
    default = _target_of(target).default_recipe if target is not None else "dense"
    chosen = make_recipe(recipe, default, sparsity, quant)
    check_request(batch, prompt_len)
    prefill = shape_only(load_model(model, "prefill", batch, prompt_len))
    decode = None if is_encoder(model) else shape_only(load_model(model, "decode", batch))
    _check_prefill_shape(model, prefill, batch, prompt_len)
    prefill, decode = chosen.apply_model(prefill, decode, context)
    return CompressedModel(model, chosen, prefill, decode, batch, prompt_len)


def estimate(
    model: str | CompressedModel,
    target: str | HardwareModel,
    recipe: str | Recipe | None = None,
    *,
    sparsity: str | None = None,
    quant: str | None = None,
    batch: int = 1,
    prompt_len: int = 128,
    gen_len: int = 128,
    trace_path: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Return the report (DESIGN.md "Report") of one request of `model` on `target`.

    `model` is a source (compressed here with the recipe) or a `compress` result, whose
    batch and prompt length the request must then share.
    `progress` shows a bar over the FPGA simulator's length buckets on a terminal.
    """
    hw = _target_of(target)
    if trace_path is not None and hw.kind is not Kind.FPGA:
        raise InputError(
            f"--trace: target {hw.name!r} is a {hw.kind}; unit-activity traces come from the "
            "FPGA event simulator (fpga targets such as u280)"
        )
    if trace_path is not None:
        check_output_file(trace_path, (".json",), "--trace")
    request = Request(batch, prompt_len, gen_len)
    check_fits_model(model.model if isinstance(model, CompressedModel) else model, request, 1)
    if isinstance(model, CompressedModel):
        compressed = _same_request(model, request)
    else:
        compressed = compress(
            model, recipe, target=hw, sparsity=sparsity, quant=quant, batch=batch,
            prompt_len=prompt_len,
        )  # fmt: skip
    if compressed.decode is None:
        raise InputError(f"model {compressed.model!r} is an encoder: it has no decode phase")
    workload = Workload(batch, prompt_len, gen_len)
    labels = {"model": compressed.model, "target": hw.name, "recipe": compressed.recipe.name}
    graphs = (compressed.prefill, compressed.decode)
    if isinstance(hw, FpgaModel):
        report = estimate_fpga(*graphs, hw, workload, labels, trace_path, progress)
    else:
        report = estimate_analytical(*graphs, hw, workload, labels)
    bad = non_finite_path(report)
    if bad is not None:
        raise InputError(
            f"{hw.source_file or hw.name}: the estimate's {bad} is not finite: a hardware "
            "value is out of any physical range"
        )
    return report


def _target_of(spec: str | Path | HardwareModel) -> HardwareModel:
    return spec if isinstance(spec, HardwareModel) else load_hw(spec)


def _same_request(model: CompressedModel, request: Request) -> CompressedModel:
    if (model.batch, model.prompt_len) != (request.batch, request.prompt_len):
        raise InputError(
            f"the compressed {model.model} serves batch {model.batch} x prompt "
            f"{model.prompt_len}, not batch {request.batch} x prompt {request.prompt_len}"
        )
    return model


def _check_prefill_shape(model: str, prefill: Graph, batch: int, prompt_len: int) -> None:
    """Check a graph file's prefill graph was written for this request (or symbolically)."""
    shape = prefill.node("ids").type.shape
    fixed = [(d, want) for d, want in zip(shape, (batch, prompt_len), strict=True)]
    if any(isinstance(d, int) and d != want for d, want in fixed):
        raise InputError(
            f"{model}: its prefill graph takes ids {list(shape)}, not batch {batch} x prompt "
            f"{prompt_len}: use --batch {shape[0]} --prompt {shape[1]}"
        )
