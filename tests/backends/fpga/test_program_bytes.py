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
TINY_PROGRAM = "052993ea7e45e44eaf89ed1b60fe2ea9090cf7b11920160c2cb2a3865a1069d8"
TINY_LISTING = "d1d8c23fa4b215fbc4adf50189e9ed78addeab7f7463493b6e41d3115d779d70"  # DIR/program.lst
# sha256 of each core's stream of the decode bucket 144 of llama2-7b (prompt 128, gen 16),
# as DIR/program holds them. On vhk158 consecutive layers differ in token masks, so the
# period check drops a candidate whose stepped masks would leave their 4-bit fields.
LLAMA_DECODE_144 = {
    "u280": (
        "615351158408f22f978d7dd184249f1810c549f1b28259d0a67d99af5070f756",
        "5582c156d901614a8cbfd66f2188ea018b2a2d96356374d025d9a60cb4759223",
        "b8c7d42fa5ad63236b46cb9dcc876067ef9cf68093ecbb9dff7f69cf94a5e8ed",
    ),
    "vhk158": (
        "536164c9b5a49f149f1906a3ae9a4a8d7e623ade66f6892878c0e7e80015cb7a",
        "f6f7bc2d53427a0e9f72dc676dec77f75855de9084fc29b38ad954b97f3b2923",
        "dad3df3a9aaa4af36fcfd3796dde5b04b084dca0551d9a39bbe44183d51151f1",
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
