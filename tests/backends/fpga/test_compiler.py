"""Check the FPGA compiler: layout, buckets, replication of layers, errors naming the limit."""

from __future__ import annotations

import dataclasses
import itertools
import time

import numpy as np
import pytest

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.compiler import compile_program
from sparseflow.backends.registry import CompileRequest, compile_model
from sparseflow.hw_models import load_hw
from sparseflow.ir.errors import InputError
from sparseflow.ir.models import load_model
from sparseflow.ir.ops import Op
from sparseflow.passes.recipe import load_recipe, recipe_from_dict
from sparseflow.simulator.fpga_costs import TIMING_COLUMNS


def request(model: str = "tiny-llama", recipe: str = "flightllm", **kw) -> CompileRequest:
    r = load_recipe(recipe)
    pre, dec = r.apply_model(load_model(model, "prefill"), load_model(model, "decode"))
    return CompileRequest(pre, dec, load_hw("u280"), **kw)


@pytest.fixture(scope="module")
def tiny():
    return compile_program(request(prompt_len=20, gen_len=30))


def test_layout_fits_and_does_not_overlap(tiny) -> None:
    tiny.layout.check()
    assert tiny.layout.channel_bytes().max() <= load_hw("u280").hbm.bytes_per_channel
    for w in tiny.layout.weights:
        covered = sum(t.rows * t.k for t in w.tiles)
        assert covered == w.rows * w.k  # tiles cover each weight exactly once


def test_buckets_are_reused_within_their_length(tiny) -> None:
    assert [(b.phase, b.length) for b in tiny.buckets] == [
        ("prefill", 128), ("decode", 32), ("decode", 48), ("decode", 64)
    ]  # fmt: skip
    assert tiny.bucket_for("decode", 33) is tiny.bucket_for("decode", 48)
    with pytest.raises(InputError, match="no decode bucket for length 65"):
        tiny.bucket_for("decode", 65)


def test_every_stream_ends_and_tokens_balance(tiny) -> None:
    for bucket in tiny.buckets:
        for stream in bucket.streams:
            table = stream.table()
            assert table["opcode"][-1] == 6  # SYS END
            releases = sum(bin(int(m)).count("1") for m in table["release"])
            waits = sum(bin(int(m)).count("1") for m in table["wait"])
            assert waits <= releases


def test_summary_and_write(tmp_path) -> None:
    compiled = compile_model(request(prompt_len=8, gen_len=4))
    summary = compiled.summary()
    assert summary["programs"] == len(summary["buckets"]) == 2
    assert summary["program_bytes"] == sum(b["bytes"] for b in summary["buckets"])
    paths = compiled.write(tmp_path)
    assert (tmp_path / "program").stat().st_size == summary["program_bytes"]
    assert "core 0" in (tmp_path / "program.lst").read_text()
    assert any(p.suffix == ".sv" for p in paths)


def test_llama2_7b_shape_only_compiles_quickly() -> None:
    start = time.perf_counter()
    program = compile_program(request("llama2-7b", prompt_len=128, gen_len=64))
    assert time.perf_counter() - start < 30  # about 5 s for 128 + 512 on 2 cores (docs)
    decode = program.bucket_for("decode", 129)
    assert 0.5e6 < decode.nbytes < 4e6  # FlightLLM artifact: ~3 MB per decode program
    assert 3.0e9 < program.layout.used_bytes("weight") < 3.6e9  # artifact image: 3.43 GB


def test_a_bucket_taking_another_buckets_layer_period_lowers_as_alone() -> None:
    """A decode bucket lowered after another takes the period its layers were checked with
    there; it must equal the same bucket lowered first (checking its own period)."""
    req = request("llama2-7b", prompt_len=128, gen_len=40)
    after = compile_program(req, lazy=True)
    after.bucket_for("decode", 144)
    for length in (160, 176):
        alone = compile_program(req, lazy=True).bucket_for("decode", length)
        taken = after.bucket_for("decode", length)
        assert [s.to_bytes() for s in taken.streams] == [s.to_bytes() for s in alone.streams]


def test_unsupported_sparsity_names_layer_and_modes() -> None:
    r = recipe_from_dict({"passes": [
        {"pass": "sparsify_nm", "options": {"n": 2, "m": 4}},
        {"pass": "quantize_int4", "options": {"group_size": "channel", "symmetric": True}},
        {"pass": "quantize_activations"}]}, "t")  # fmt: skip
    req = CompileRequest(r.apply(load_model("tiny-llama")), None, load_hw("u280"))
    with pytest.raises(
        InputError, match=r"layer layers.0.attn.q_proj: sparsity .*2:4.*\[2, 4, 8, 16\]"
    ):
        compile_program(req)


def test_an_op_without_lowering_is_named() -> None:
    graph = load_recipe("flightllm").apply(load_model("tiny-llama"))
    nodes = [
        dataclasses.replace(n, op=Op.CONCAT) if n.name == "layers.0.mlp.act" else n
        for n in graph.nodes
    ]
    with pytest.raises(InputError, match=r"node %layers.0.mlp.act: op 'concat' has no FPGA"):
        compile_program(CompileRequest(graph.with_nodes(nodes), None, load_hw("u280")))


def test_float_weights_and_small_hbm_are_named() -> None:
    dense = CompileRequest(load_model("tiny-llama"), None, load_hw("u280"))
    with pytest.raises(InputError, match="layer layers.0.attn.q_proj"):
        compile_program(dense)
    hw = load_hw("u280")
    tiny_hbm = dataclasses.replace(hw, hbm=dataclasses.replace(hw.hbm, bytes_per_channel=4096))
    req = dataclasses.replace(request(prompt_len=4, gen_len=2), hw=tiny_hbm)
    with pytest.raises(InputError, match="bytes of HBM.*hbm.bytes_per_channel"):
        compile_program(req)


def test_cores_pass_the_same_barriers(tiny) -> None:
    for bucket in tiny.buckets:
        counts = {
            int(((t["opcode"] == 6) & (t["op"] == 0)).sum())
            for t in (s.table() for s in bucket.streams)
        }
        assert len(counts) == 1  # every barrier is device-wide


def test_sfu_work_is_per_tile_and_per_head(tiny) -> None:
    table = tiny.bucket_for("decode", 40).streams[0].table()
    sfu = table["opcode"] == 5
    largest = int(table["length"][sfu].max())
    assert largest <= 256  # tiny-llama: at most the vocabulary, never heads x keys


def test_prefill_chunks_size_sfu_work_per_token() -> None:
    """A prompt longer than a pass: each norm covers the hidden size per token of the chunk,
    the same whether the graph's token count is symbolic or the prompt's."""
    r = load_recipe("flightllm")
    hw = load_hw("u280")
    buffers = dataclasses.replace(hw.core.buffers, activation_buffer_bytes=4096)
    hw = dataclasses.replace(hw, core=dataclasses.replace(hw.core, buffers=buffers))
    programs = []
    for seq in ("T", 128):
        prefill, decode = r.apply_model(
            load_model("tiny-llama", "prefill", 1, seq), load_model("tiny-llama", "decode")
        )
        req = CompileRequest(prefill, decode, hw, prompt_len=128, gen_len=2)
        programs.append(compile_program(req).bucket_for("prefill", 128))
    bucket = programs[1]
    assert bucket.chunk_tokens < bucket.length  # several passes
    table = bucket.streams[0].table()
    norms = (table["opcode"] == 5) & (table["op"] == int(isa.SfuOp.RMSNORM))
    assert norms.any()
    assert set(table["length"][norms].tolist()) == {64}  # tiny-llama hidden size
    assert set(table["rows"][norms].tolist()) == {bucket.chunk_tokens}
    for symbolic, concrete in zip(programs[0].streams, bucket.streams, strict=True):
        a, b = symbolic.table(), concrete.table()  # equal up to SFU-buffer addresses
        assert all(np.array_equal(a[c], b[c]) for c in TIMING_COLUMNS)


def test_stores_never_overlap_and_stay_in_their_regions() -> None:
    """Every prefill pass (several here) writes its own KV rows and logits rows, decode its
    step's; a STORE never spills out of its region (the KV cache holds the padded prompt)."""
    hw = load_hw("u280")
    buffers = dataclasses.replace(hw.core.buffers, activation_buffer_bytes=4096)
    hw = dataclasses.replace(hw, core=dataclasses.replace(hw.core, buffers=buffers))
    program = compile_program(dataclasses.replace(request(prompt_len=100, gen_len=3), hw=hw))
    assert program.buckets[0].chunk_tokens < program.buckets[0].length
    regions = [(r.channel, r.addr, r.end, r.name) for r in program.layout.regions]
    for bucket in program.buckets:
        written = []
        for stream in bucket.streams:
            table = stream.table()
            for row in np.flatnonzero(table["opcode"] == int(isa.Opcode.STORE)):
                ch, addr = int(table["channel"][row]), int(table["hbm_addr"][row])
                end = addr + int(table["nbytes"][row]) // isa.HBM_WORD_BYTES
                inside = [n for c, a, e, n in regions if c == ch and a <= addr and end <= e]
                assert len(inside) == 1, (bucket.key, ch, addr, end)
                assert inside[0].startswith(("kv.", "io.logits"))
                written.append((ch, addr, end))
        written.sort()
        for (c1, _, e1), (c2, a2, _) in itertools.pairwise(written):
            assert c1 != c2 or e1 <= a2, bucket.key


def test_rows_split_by_channels_and_kv_on_own_channels() -> None:
    from sparseflow.backends.fpga.layout import core_channels

    program = compile_program(request(prompt_len=20, gen_len=30))
    hw = load_hw("u280")
    for region in program.layout.regions:
        if region.kind == "kv":
            core = int(region.name.split(".")[3]) % hw.cores
            assert region.channel in core_channels(hw, core)
