"""A compiled tiny-llama program, its reference generation and a runner over edited streams,
shared by the instruction-set simulator's tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.compiler import FpgaCompiled
from sparseflow.backends.fpga.iss.runner import Device, IssRunner
from sparseflow.backends.registry import CompileRequest, compile_model
from sparseflow.backends.runner import Generation, generate, prompt_ids, rel_error
from sparseflow.hw_models import load_hw
from sparseflow.ir.graph import Graph
from sparseflow.ir.interpreter import Interpreter
from sparseflow.ir.models import load_model
from sparseflow.passes.recipe import load_recipe

PROMPT, GEN = 6, 3
# The simulator's logits equal the reference's (test_runner.py); a corrupted program must
# move them past the bound.
REL_ERROR_BOUND = 1e-3

Streams = dict[tuple[str, int], list[list[isa.Instruction]]]


@dataclass
class Tiny:
    """tiny-llama compiled for u280 with its graphs, prompt and reference generation."""

    compiled: FpgaCompiled
    prefill: Graph
    decode: Graph
    ids: np.ndarray
    reference: Generation

    def streams(self) -> Streams:
        """Return every bucket's per-core instructions, decoded from the program bytes."""
        return {
            b.key: [isa.decode(s.to_bytes()) for s in b.streams]
            for b in self.compiled.program.buckets
        }

    def run(self, streams: Streams | None = None, seed: int = 0) -> tuple[Generation, Device]:
        """Generate on the instruction-set simulator (`streams` re-encoded to bytes and
        decoded, so every edit is one the binary can hold), with the reference's tokens."""
        programs = None
        if streams is not None:
            programs = {
                key: [isa.decode(isa.encode(s)) for s in cores] for key, cores in streams.items()
            }
        device = Device(self.compiled.program, self.prefill, seed, programs)
        runners = (
            IssRunner(device, self.prefill, "prefill"),
            IssRunner(device, self.decode, "decode"),
        )
        gen = generate(*runners, self.prefill, self.ids, GEN, forced=self.reference.tokens)
        return gen, device

    def error(self, gen: Generation) -> float:
        return rel_error(gen, self.reference)


@pytest.fixture(scope="session")
def tiny() -> Tiny:
    pre, dec = load_recipe("flightllm").apply_model(
        load_model("tiny-llama", "prefill"), load_model("tiny-llama", "decode")
    )
    request = CompileRequest(pre, dec, load_hw("u280"), prompt_len=PROMPT, gen_len=GEN)
    ids = prompt_ids(256, 1, PROMPT)
    reference = generate(Interpreter(pre), Interpreter(dec), pre, ids, GEN)
    return Tiny(compile_model(request), pre, dec, ids, reference)
