"""One design point: a model compressed by a recipe, estimated on a hardware model.

`compress` is the expensive step a sweep shares between hardware points; `estimate` of a
compressed model on a target is one design point. Both take plain values (names, paths,
numbers, hardware models or their plain data) and return plain records; `sparseflow.api`
and the design-space explorer are built on them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from sparseflow.simulator.cluster import estimate_cluster
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
    symbolic_prompt: bool = False,
) -> CompressedModel:
    """Return `model`'s shape-only graphs compressed by the recipe (the target's default when
    none is named), for requests of `batch` x `prompt_len` tokens (`symbolic_prompt`: a
    prefill graph of symbolic length T, for prompts of several lengths up to prompt_len)."""
    default = _target_of(target).default_recipe if target is not None else "dense"
    chosen = make_recipe(recipe, default, sparsity, quant)
    check_request(batch, prompt_len)
    seq = "T" if symbolic_prompt else prompt_len
    prefill = shape_only(load_model(model, "prefill", batch, seq))
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
    prompt_lens: Sequence[int] = (),
    ragged: bool = True,
    trace_path: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Return the report (DESIGN.md "Report") of one request of `model` on `target`.

    `model` is a source (compressed here with the recipe) or a `compress` result, whose
    batch and prompt length the request must then share. `prompt_lens` gives each sequence
    its own prompt (the batch is their count, `prompt_len` their longest), run `ragged`
    (packed, no padding) or padded to the longest. `progress` shows a bar over the FPGA
    simulator's length buckets on a terminal.
    """
    hw = _target_of(target)
    _check_trace(hw, trace_path)
    workload = make_workload(batch, prompt_len, gen_len, prompt_lens, ragged)
    request = Request(workload.batch, workload.prompt_len, gen_len)
    check_fits_model(model.model if isinstance(model, CompressedModel) else model, request, 1)
    compressed = _compressed_for(model, hw, workload, recipe, sparsity, quant)
    if compressed.decode is None:
        raise InputError(f"model {compressed.model!r} is an encoder: it has no decode phase")
    labels = {"model": compressed.model, "target": hw.name, "recipe": compressed.recipe.name}
    graphs = (compressed.prefill, compressed.decode)
    if is_cluster(hw):
        report = estimate_cluster(*graphs, hw, workload, labels)
    elif isinstance(hw, FpgaModel):
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


def make_workload(
    batch: int, prompt_len: int, gen_len: int, prompt_lens: Sequence[int] = (), ragged: bool = True
) -> Workload:
    """Return the request: `prompt_lens` (one per sequence), when given, set the batch and
    the longest prompt; InputError names --batch when it disagrees with their count."""
    lens = tuple(prompt_lens)
    if not lens:
        return Workload(batch, prompt_len, gen_len, ragged=ragged)
    for n in lens:
        check_request(1, n)
    if batch not in (1, len(lens)):
        raise InputError(f"--batch {batch} differs from the {len(lens)} prompt lengths given")
    return Workload(len(lens), max(lens), gen_len, lens, ragged)


def _check_trace(hw: HardwareModel, trace_path: str | Path | None) -> None:
    if trace_path is None:
        return
    if hw.kind is not Kind.FPGA:
        raise InputError(
            f"--trace: target {hw.name!r} is a {hw.kind}; unit-activity traces come from the "
            "FPGA event simulator (fpga targets such as u280)"
        )
    if is_cluster(hw):
        raise InputError("--trace: traces show one device's run; estimate without --devices")
    check_output_file(trace_path, (".json",), "--trace")


def _compressed_for(
    model: str | CompressedModel, hw: HardwareModel, workload: Workload, recipe, sparsity, quant
) -> CompressedModel:
    """Return the model compressed for one micro-batch of the request (symbolic prompt
    length when ragged prompts need the prefill at several lengths)."""
    micro_batch = _micro_batch(hw, workload.batch)
    symbolic = workload.is_ragged
    if isinstance(model, CompressedModel):
        concrete = isinstance(model.prefill.node("ids").type.shape[1], int)
        if model.batch != micro_batch or (symbolic and concrete):
            return compress(model.model, model.recipe, target=hw, batch=micro_batch,
                            prompt_len=model.prompt_len, symbolic_prompt=symbolic)  # fmt: skip
        return _same_request(model, Request(micro_batch, workload.prompt_len, workload.gen_len))
    return compress(
        model, recipe, target=hw, sparsity=sparsity, quant=quant, batch=micro_batch,
        prompt_len=workload.prompt_len, symbolic_prompt=symbolic,
    )  # fmt: skip


def is_cluster(hw: HardwareModel) -> bool:
    """Return whether `hw` maps a request onto several devices or micro-batches."""
    return hw.parallel.device_count > 1 or hw.parallel.micro_batches > 1


def _micro_batch(hw: HardwareModel, batch: int) -> int:
    """Return the sequences of one micro-batch (the graphs are built for it)."""
    micro = hw.parallel.micro_batches
    if batch % micro:
        raise InputError(
            f"--micro-batches {micro} (parallel.micro_batches) does not divide --batch {batch}"
        )
    return batch // micro


def parallel_overrides(
    devices: int | None = None,
    tp: int | None = None,
    pp: int | None = None,
    micro_batches: int | None = None,
) -> dict[str, int | None]:
    """Return the `parallel.*` hardware overrides of the --devices/--tp/--pp/--micro-batches
    options (the target's own values stand for those not given): --devices alone is
    tensor parallelism; with one of --tp/--pp the other follows; with both, devices must be
    tp x pp. InputError names the option at fault."""
    options = (("--devices", devices), ("--tp", tp), ("--pp", pp),
               ("--micro-batches", micro_batches))  # fmt: skip
    for option, value in options:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise InputError(f"{option} must be an integer >= 1, not {value!r}")
    chosen: dict[str, int | None] = {"parallel.devices": devices}
    if devices is not None:
        tp, pp = _split_devices(devices, tp, pp)
    chosen.update({f"parallel.{k}": v for k, v in (("tp", tp), ("pp", pp)) if v is not None})
    if micro_batches is not None:
        chosen["parallel.micro_batches"] = micro_batches
    return chosen


def _split_devices(devices: int, tp: int | None, pp: int | None) -> tuple[int, int]:
    if tp is None and pp is None:
        return devices, 1
    if tp is None or pp is None:
        given, name = (tp, "--tp") if tp is not None else (pp, "--pp")
        if devices % given:
            raise InputError(f"--devices {devices} is not a multiple of {name} {given}")
        return (tp, devices // tp) if tp is not None else (devices // pp, pp)
    if devices != tp * pp:
        raise InputError(f"--devices {devices} must equal --tp {tp} x --pp {pp} = {tp * pp}")
    return tp, pp


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
