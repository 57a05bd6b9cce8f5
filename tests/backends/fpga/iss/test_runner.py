"""The instruction-set simulator runs tiny-llama's program bytes: logits equal the reference's,
every bucket run counts its instructions, DIR/program decodes to the same streams, and any
legal interleaving of the queues gives the same logits."""

from __future__ import annotations

import numpy as np

from sparseflow.backends.fpga.functional import FunctionalRunner
from sparseflow.backends.fpga.iss import machine
from sparseflow.backends.fpga.iss.runner import streams_from_file
from sparseflow.backends.runner import generate

from .conftest import GEN, PROMPT


def test_logits_track_the_reference_and_every_instruction_runs(tiny) -> None:
    gen, device = tiny.run()
    assert tiny.error(gen) == 0.0  # bit for bit (mutations: test_mutations.py)
    program = tiny.compiled.program
    used = [program.bucket_for("prefill", PROMPT)]
    used += [program.bucket_for("decode", PROMPT + step) for step in range(1, GEN)]
    assert device.runs == GEN
    assert device.executed == sum(b.n_instructions for b in used) > 0


def test_the_program_file_decodes_to_the_streams_that_run(tiny, tmp_path) -> None:
    tiny.compiled.write(tmp_path)
    data = (tmp_path / "program").read_bytes()
    assert streams_from_file(data, tiny.compiled.program) == tiny.streams()


def test_random_legal_interleavings_give_identical_logits(tiny, monkeypatch) -> None:
    orders: list[list[tuple[int, int, int]]] = []
    execute = machine._Run.execute

    def recorded(run, core: int, unit: int, index: int) -> None:
        orders[-1].append((core, unit, index))
        execute(run, core, unit, index)

    monkeypatch.setattr(machine._Run, "execute", recorded)
    logits = []
    for seed in (0, 1, 2):
        orders.append([])
        gen, _ = tiny.run(seed=seed)
        logits.append(gen.all_logits())
    assert orders[0] != orders[1] and orders[1] != orders[2]  # the queues ran in other orders
    assert sorted(orders[0]) == sorted(orders[1])  # the same instructions
    for other in logits[1:]:
        assert np.array_equal(logits[0], other)


def test_the_binary_computes_what_the_functional_model_computes(tiny) -> None:
    """The functional model (`functional.py`: the graph with the engine's arithmetic, tile by
    tile, no data movement) is an independent oracle: executing the bytes gives its logits."""
    program, pre, dec = tiny.compiled.program, tiny.prefill, tiny.decode
    runners = FunctionalRunner(program, pre, "prefill"), FunctionalRunner(program, dec, "decode")
    functional = generate(*runners, pre, tiny.ids, GEN, forced=tiny.reference.tokens)
    gen, _ = tiny.run()
    assert np.array_equal(gen.all_logits(), functional.all_logits())
