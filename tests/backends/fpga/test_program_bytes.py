"""`compile` writes the same program bytes as before the compiler built column blocks: hashes
of DIR/program for tiny-llama and of one llama2-7b decode bucket, recorded from the
word-by-word encoder."""

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
TINY_PROGRAM = "ce1e5ec0ef0915e83bea9ec7dc30b7f6debd7a44e45357d732d628d5025ca935"
TINY_LISTING = "44c773cbcc4b89f97fac7dc3cda6cbd543e72d3e51026f87a32c2816c22f1552"  # DIR/program.lst
# sha256 of each core's stream of the decode bucket 144 of llama2-7b (prompt 128, gen 16),
# as DIR/program holds them. Both parts now run the same 64-chain core with 4 MiB weight
# buffers (docs/fpga_resources.md), so their buckets are the same bytes. The values were
# checked equal to the compiler before block-wise lowering on the same hardware models.
LLAMA_DECODE_144 = {
    "u280": (
        "2bfc0a2cae2ce70b188911f62c6d15b9fae50d839ba2664b2b52402c8a791e7f",
        "df148133b07f75d26532b13c6bd83cfd892b3a69f9fa32a51ac03583edd1ee74",
        "8085ab552bde05956f89232b849d3e0d2bd5620e85d70389286e2d3ceea5630e",
    ),
    "vhk158": (
        "2bfc0a2cae2ce70b188911f62c6d15b9fae50d839ba2664b2b52402c8a791e7f",
        "df148133b07f75d26532b13c6bd83cfd892b3a69f9fa32a51ac03583edd1ee74",
        "8085ab552bde05956f89232b849d3e0d2bd5620e85d70389286e2d3ceea5630e",
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
