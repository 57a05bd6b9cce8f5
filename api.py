"""The library API: every command of the `sparseflow` CLI is a thin layer over these functions.

Each takes plain values (names, paths, numbers, or the records below) and returns plain
JSON-ready records; nothing prints, nothing is kept between calls. A sweep, a notebook or a
user's own orchestrator calls the same functions as the command line:

    from sparseflow import api
    model = api.compress("llama2-7b", "flightllm", prompt_len=128)   # shape-only graphs
    for clock_hz in (200e6, 225e6, 250e6):
        hw = api.load_target("u280", {"clock_hz": clock_hz})
        report = api.estimate(model, hw, gen_len=512)

`compress` is the expensive step a sweep shares between hardware points; `estimate` of a
compressed model on a target is one design point. Bad input raises `InputError` with one
line naming the file, field, option or node.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparseflow.backends.outdir import check_output_file, staged_dir
from sparseflow.backends.runner import check_request
from sparseflow.hw_models.loader import hw_from_dict, load_hw, with_overrides
from sparseflow.hw_models.schema import FpgaModel, HardwareModel, Kind
from sparseflow.ir.errors import InputError
from sparseflow.ir.fileio import non_finite_path
from sparseflow.ir.graph import Graph, shape_only
from sparseflow.ir.models.zoo import load_config
from sparseflow.ir.ops import Op
from sparseflow.passes.manager import PassContext
from sparseflow.passes.recipe import Recipe, load_recipe, shorthand_recipe

PLOT_SUFFIXES = (".png", ".pdf", ".svg")
# The request `run` makes on a GPU target when no GPU is present and none was asked for:
# numba's CUDA simulator runs kernels as Python (about 5 s per tiny-llama prompt token and
# 30 s per decode step on 2 cores), so the default 128 + 128 would take hours.
SIMULATOR_REQUEST = {"prompt_len": 8, "gen_len": 2}
DEFAULT_REQUEST = {"prompt_len": 128, "gen_len": 128}


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


def is_encoder(model: str) -> bool:
    """Return whether a model source is an encoder (BERT: no decode phase)."""
    from sparseflow.backends.pipeline import is_encoder as encoder

    return encoder(model)


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
    from sparseflow.ir.models.zoo import load_model

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
) -> dict[str, Any]:
    """Return the report (DESIGN.md "Report") of one request of `model` on `target`.

    `model` is a source (compressed here with the recipe) or a `compress` result, whose
    batch and prompt length the request must then share.
    """
    from sparseflow.simulator.estimate import Workload, estimate_analytical
    from sparseflow.simulator.fpga_estimate import estimate_fpga

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
        report = estimate_fpga(*graphs, hw, workload, labels, trace_path=trace_path)
    else:
        report = estimate_analytical(*graphs, hw, workload, labels)
    bad = non_finite_path(report)
    if bad is not None:
        raise InputError(
            f"{hw.source_file or hw.name}: the estimate's {bad} is not finite: a hardware "
            "value is out of any physical range"
        )
    return report


def compile(
    model: str,
    target: str | HardwareModel,
    out_dir: str | Path,
    recipe: str | Recipe | None = None,
    *,
    sparsity: str | None = None,
    quant: str | None = None,
    batch: int = 1,
    prompt_len: int = 128,
    gen_len: int = 128,
    context: PassContext | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Compress and compile `model` for `target` into `out_dir`; return report.json's record.

    The folder is written whole or not at all (see `backends.outdir`): a failure or an
    interrupt leaves what was there before.
    """
    from sparseflow.backends.pipeline import compile_to_dir

    hw = _target_of(target)
    chosen = make_recipe(recipe, hw.default_recipe, sparsity, quant)
    request = Request(batch, prompt_len, gen_len)
    check_fits_model(model, request)
    out = Path(out_dir)
    with staged_dir(out, lambda d: _compiled_for(d, hw.name), force) as staging:
        report = compile_to_dir(model, hw, chosen, staging, request.as_dict(), context)
    return report


def run(
    model: str,
    target: str | HardwareModel,
    recipe: str | Recipe | None = None,
    *,
    sparsity: str | None = None,
    quant: str | None = None,
    batch: int = 1,
    prompt_len: int | None = None,
    gen_len: int | None = None,
    context: PassContext | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run one request on the target's backend; return the run record (DESIGN.md `run`).

    Unset `prompt_len` / `gen_len` take `default_request(target)`: the full default request,
    or a short one where a GPU target runs on the CUDA simulator.
    """
    from sparseflow.backends.pipeline import run_request

    hw = _target_of(target)
    chosen = make_recipe(recipe, hw.default_recipe, sparsity, quant)
    defaults = default_request(hw)
    prompt_len = defaults["prompt_len"] if prompt_len is None else prompt_len
    gen_len = defaults["gen_len"] if gen_len is None else gen_len
    request = Request(batch, prompt_len, gen_len)
    check_fits_model(model, request)
    check_host_memory(model)
    return run_request(model, hw, chosen, request.as_dict(), context or PassContext(), progress)


def simulated_gpu(hw: HardwareModel) -> bool:
    """Return whether `run` on `hw` executes its kernels on numba's CUDA simulator."""
    if hw.kind is not Kind.GPU:
        return False
    from sparseflow.backends.gpu import using_simulator

    return using_simulator()


def default_request(hw: HardwareModel) -> dict[str, int]:
    """Return the prompt and generated lengths `run` uses on `hw` when none are given."""
    return SIMULATOR_REQUEST if simulated_gpu(hw) else DEFAULT_REQUEST


def show(model: str, context: int = 512) -> dict[str, Any]:
    """Return a model's parameters, weight bytes, FLOPs and bytes per token, and layers."""
    from sparseflow.ir.models.zoo import load_model
    from sparseflow.ir.stats import model_stats

    if isinstance(context, bool) or not isinstance(context, int) or context < 1:
        raise InputError(f"--context must be an integer >= 1, got {context!r}")
    phase = "prefill" if is_encoder(model) else "decode"
    return model_stats(load_model(model, phase=phase), context=context)


def check_host_memory(model: str) -> None:
    """Raise InputError when running `model` would need more memory than the machine has.

    A run holds the dense float32 weights, their compressed copy and the backend's own
    (converted) copy: about 3 x 4 bytes per parameter.
    """
    try:
        config = load_config(model)
    except InputError:
        return
    from sparseflow.ir.models.zoo import build_graph

    params = sum(n.type.numel() for n in build_graph(config, "prefill", 1, 1).nodes_of(Op.WEIGHT))
    need = 12 * params
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise InputError(
            f"run {model}: needs about {need / 1e9:.1f} GB of memory for its weights "
            f"({params:,} parameters as float32, compressed and converted), this machine has "
            f"{have / 1e9:.1f} GB; use `estimate` for this model, or a smaller one"
        )


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


def _compiled_for(folder: Path, targetname: str) -> bool:
    """Return whether `folder` holds an earlier `compile` for the same target."""
    report = folder / "report.json"
    if report.is_symlink() or not report.is_file():
        return False
    try:
        return json.loads(report.read_text()).get("target") == targetname
    except (OSError, ValueError, AttributeError):
        return False
