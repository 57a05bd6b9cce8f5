"""Run a model split over several FPGA cards on the functional model, with host collectives.

Requires: a decoder whose weights the recipe compresses for the engine (flightllm), and a
tensor-parallel group of `tp` cards of one part. Ensures: the cards' results as the
accelerators and the host compute them:
- the dense model (seeded random weights when it has none) is split by
  `passes.parallel.map_devices`, then each card's graphs are compressed by the recipe with the
  whole model's calibration (the value-cache scales of the unsplit model: one scale per layer
  for every card, as a deployment calibrates before sharding);
- each card's own program (`local_program`: no collectives) is compiled by the unchanged
  compiler, and its graph runs on the functional model (`FunctionalRunner`: engine linears and
  attention, SFU rounding) with the collectives as host kernels: each card's partial sums
  leave it rounded to the SFU precision, the host adds them in float32 (an all-gather
  concatenates the logits shards), and every card continues from the result
  (`backends.cluster`). The transfer itself is not an instruction: its time and energy are the
  estimate's link model.
`run_split` returns the tokens and the logits' relative errors against the numpy reference of
the same compressed split graphs (the same host collectives) and against the unsplit dense
model, like `run`'s record.
"""

from __future__ import annotations

from dataclasses import replace

from sparseflow.backends.cluster import ClusterRunner, reference_runner
from sparseflow.backends.fpga.compiler import compile_program
from sparseflow.backends.fpga.functional import FunctionalRunner
from sparseflow.backends.pipeline import compress_model
from sparseflow.backends.registry import CompileRequest
from sparseflow.backends.runner import generate, prompt_ids, rel_error
from sparseflow.hw_models.schema import FpgaModel
from sparseflow.ir.graph import Graph
from sparseflow.ir.interpreter import Interpreter, Kernel
from sparseflow.ir.weights import Weights
from sparseflow.passes.manager import PassContext
from sparseflow.passes.parallel import DeviceGraph, local_program, map_devices
from sparseflow.passes.recipe import Recipe


def run_split(
    model: str,
    hw: FpgaModel,
    recipe: Recipe,
    tp: int,
    prompt_len: int,
    gen_len: int,
    ctx: PassContext | None = None,
) -> dict:
    """Run one batch-1 request of `model` on `tp` cards (module doc); return its record."""
    ctx = ctx or PassContext()
    pair = compress_model(model, recipe, 1, functional=True, ctx=ctx)
    calibrated = [k for k in pair.prefill.weights if k.startswith("v.") and k.endswith(".scale")]
    scales = Weights({k: pair.prefill.weights[k] for k in calibrated})
    cards = _compressed_cards(pair.dense_prefill, pair.dense_decode, recipe, tp, ctx, scales)
    programs = [
        compile_program(
            CompileRequest(
                local_program(p.graph), local_program(d.graph), hw, 1, prompt_len, gen_len
            )
        )  # fmt: skip
        for p, d in zip(*cards, strict=True)
    ]
    ids = prompt_ids(int(pair.prefill.meta_dict["vocab_size"]), 1, prompt_len, ctx.seed)
    runners = [
        ClusterRunner([phase], _card_factory(programs, phase_name))
        for phase, phase_name in zip(cards, ("prefill", "decode"), strict=True)
    ]
    cards_run = generate(*runners, pair.prefill, ids, gen_len)
    reference = [ClusterRunner([phase], reference_runner) for phase in cards]
    ref = generate(*reference, pair.prefill, ids, gen_len, forced=cards_run.tokens)
    dense = generate(Interpreter(pair.dense_prefill), Interpreter(pair.dense_decode),
                     pair.dense_prefill, ids, gen_len, forced=cards_run.tokens)  # fmt: skip
    return {
        "model": model, "target": hw.name, "recipe": recipe.name, "cards": tp,
        "tokens": cards_run.tokens.tolist(),
        "logits_rel_error_vs_reference": rel_error(cards_run, ref),
        "logits_rel_error_vs_dense": rel_error(cards_run, dense),
    }  # fmt: skip


def _compressed_cards(
    prefill: Graph, decode: Graph, recipe: Recipe, tp: int, ctx: PassContext, scales: Weights
) -> tuple[list[DeviceGraph], list[DeviceGraph]]:
    """Return the cards' compressed (prefill, decode) graphs, in rank order."""
    pre_cards, dec_cards = map_devices(prefill, tp, 1)[0], map_devices(decode, tp, 1)[0]
    out_pre, out_dec = [], []
    for pre, dec in zip(pre_cards, dec_cards, strict=True):
        graphs = recipe.apply_model(pre.graph, dec.graph, replace(ctx, reuse=scales))
        out_pre.append(replace(pre, graph=graphs[0]))
        out_dec.append(replace(dec, graph=graphs[1]))
    return out_pre, out_dec


def _card_factory(programs: list, phase: str):
    """Return the runner factory of one phase: card `rank`'s functional model + collectives."""

    def make(graph: Graph, collectives: dict[str, Kernel]) -> Interpreter:
        rank = int(graph.meta_dict.get("tp_rank", 0))
        card = FunctionalRunner(programs[rank], graph, phase)
        return Interpreter(graph, kernels={**card.interpreter.kernels, **collectives})

    return make
