"""`compile` writes the same program bytes as before the compiler built column blocks: hashes
of DIR/program for tiny-llama and of one llama2-7b decode bucket, recorded from the
word-by-word encoder.

Re-recorded when the programs became what the instruction-set simulator executes: SFU
values allocated by liveness (barriers where only one frees a span), DEQUANT and fused ops at
each tile's row offset, LOAD layouts for stored weight words and KV rows, per-row key scales
and partial-word STOREs for KV rows. The tiny-llama bytes are checked by running them
(tests/backends/fpga/iss)."""

from __future__ import annotations

import hashlib

import pytest

from sparseflow.backends.fpga.compiler import compile_program
from sparseflow.backends.registry import CompileRequest
from sparseflow.cli import main
from sparseflow.hw_models.loader import load_hw
from sparseflow.ir.graph import shape_only
from sparseflow.ir.models.zoo import load_model
from sparseflow.passes.recipe import load_recipe

# sha256 of DIR/program after `sparseflow compile tiny-llama --target u280 -o DIR`.
TINY_PROGRAM = "45d29e5a8d08ecc0ce8caa46e44d61c32ae234167be083a973cc0dbc6d660f83"
TINY_LISTING = "cffde8a80fb6e7b3414539b717ca13e0e3db234042c8edd82b5a1059c5666c1b"  # DIR/program.lst
# sha256 of each core's stream of the decode bucket 144 of llama2-7b (prompt 128, gen 16),
# as DIR/program holds them. Both parts now run the same 64-chain core with 4 MiB weight
# buffers (docs/fpga_resources.md), so their buckets are the same bytes. The values were
# checked equal to the compiler before block-wise lowering on the same hardware models.
LLAMA_DECODE_144 = {
    "u280": (
        "60c52dc8e6be56ea0437b5eb8cadcdf28d07b4c6ec6b80984503cab0e37da26c",
        "b7fc6bcdd663cb42bbcf5952deabaa70e6c1e4abf35dbbd02c332c7fdcbc8320",
        "ccca0a5f2468f015aed7d737b910f8673eff0bfb1dd9e2bf918a37473154f924",
    ),
    "vhk158": (
        "60c52dc8e6be56ea0437b5eb8cadcdf28d07b4c6ec6b80984503cab0e37da26c",
        "b7fc6bcdd663cb42bbcf5952deabaa70e6c1e4abf35dbbd02c332c7fdcbc8320",
        "ccca0a5f2468f015aed7d737b910f8673eff0bfb1dd9e2bf918a37473154f924",
    ),
}


def test_tiny_llama_program_bytes_are_unchanged(tmp_path) -> None:
    assert main(["compile", "tiny-llama", "--target", "u280", "-o", str(tmp_path)]) == 0
    assert hashlib.sha256((tmp_path / "program").read_bytes()).hexdigest() == TINY_PROGRAM
    listing = (tmp_path / "program.lst").read_bytes()
    assert hashlib.sha256(listing).hexdigest() == TINY_LISTING


@pytest.mark.parametrize("target", sorted(LLAMA_DECODE_144))
def test_llama2_7b_decode_bucket_bytes_are_unchanged(target: str) -> None:
    prefill, decode = load_recipe("flightllm").apply_model(
        shape_only(load_model("llama2-7b", "prefill", 1, 128)),
        shape_only(load_model("llama2-7b", "decode")),
    )
    request = CompileRequest(prefill, decode, load_hw(target), 1, 128, 16)
    bucket = compile_program(request, lazy=True).bucket_for("decode", 144)
    hashes = tuple(hashlib.sha256(s.to_bytes()).hexdigest() for s in bucket.streams)
    assert hashes == LLAMA_DECODE_144[target]
