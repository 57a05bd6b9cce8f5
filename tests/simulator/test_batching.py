"""Batches of prompts of different lengths: packed (ragged) or padded to the longest, with
the prefill and decode work each implies, and the report saying which."""

from __future__ import annotations

import pytest

from sparseflow.hw_models.loader import load_hw
from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import InputError
from sparseflow.ir.models import BUILTINS, build_graph
from sparseflow.simulator.design import compress, estimate, make_workload
from sparseflow.simulator.estimate import Workload, prefill_works, prepare_works
from sparseflow.simulator.graph_work import graph_works

LLAMA = BUILTINS["llama2-7b"]


def test_one_length_is_the_same_request_ragged_or_padded():
    base = estimate("llama2-7b", "a100", "dense", batch=3, prompt_len=64, gen_len=4)
    for ragged in (True, False):
        same = estimate("llama2-7b", "a100", "dense", prompt_lens=(64, 64, 64), gen_len=4,
                        ragged=ragged)  # fmt: skip
        for key in ("prefill_latency_s", "e2e_latency_s", "energy_j"):
            assert same[key] == pytest.approx(base[key], rel=1e-12)
        assert same["batching"]["padding_fraction"] == 0


@pytest.mark.parametrize("lens", [(16, 48), (5, 100, 37), (1, 2, 3, 64)])
def test_ragged_prefill_does_each_prompt_once_and_reads_weights_once(lens):
    prefill = build_graph(LLAMA, "prefill", len(lens), "T")
    ragged = prefill_works(prefill, Workload(len(lens), max(lens), 1, lens), DType.F16, True)
    alone = [graph_works(build_graph(LLAMA, "prefill", 1, n), {}, DType.F16, True) for n in lens]
    assert sum(w.flops for w in ragged) == pytest.approx(sum(w.flops for a in alone for w in a))
    for field in ("activation_bytes_read", "bytes_written", "kv_bytes_read"):
        total = sum(getattr(w, field) for a in alone for w in a)
        # the batch graph reads one position vector [T] for all its sequences (RoPE, mask):
        # 8 bytes a token, against 2 x 4096 fp16 values a token for each hidden state
        assert sum(getattr(w, field) for w in ragged) == pytest.approx(total, rel=2e-4)
    weights = sum(w.stored_weight_bytes for w in ragged if w.op_class.value == "linear")
    assert weights == sum(w.stored_weight_bytes for w in alone[0] if w.op_class.value == "linear")


def test_ragged_decode_attends_over_each_sequence_own_cache():
    """Prompts of 20 and 60 tokens cache 80 positions in all, as two prompts of 40 do."""
    hw = load_hw("a100")
    decode = build_graph(LLAMA, "decode", 2)
    prefill = build_graph(LLAMA, "prefill", 2, "T")
    ragged = prepare_works(prefill, decode, hw, Workload(2, 60, 4, (20, 60)))
    even = prepare_works(prefill, decode, hw, Workload(2, 40, 4))
    padded = prepare_works(prefill, decode, hw, Workload(2, 60, 4, (20, 60), ragged=False))
    kv = [sum(w.kv_bytes_read for w in r.decode_first) for r in (ragged, even, padded)]
    assert kv[0] == pytest.approx(kv[1]) and kv[2] == pytest.approx(kv[1] * 61 / 41)


def test_report_says_how_the_prompts_ran():
    lens = (128, 512, 64, 1024)
    ragged = estimate("llama2-7b", "a100", "dense", prompt_lens=lens, gen_len=8)
    padded = estimate("llama2-7b", "a100", "dense", prompt_lens=lens, gen_len=8, ragged=False)
    assert ragged["batching"] == {
        "mode": "ragged", "prompt_lens": list(lens), "prompt_tokens": 1728,
        "prefill_tokens": 1728, "padding_fraction": 0.0, "first_step_kv_tokens": 1728,
    }  # fmt: skip
    assert padded["batching"]["prefill_tokens"] == 4096
    assert padded["batching"]["padding_fraction"] == pytest.approx(1 - 1728 / 4096)
    assert ragged["prefill_latency_s"] < padded["prefill_latency_s"]
    assert ragged["decode_first_step_s"] < padded["decode_first_step_s"]
    assert ragged["batch"] == 4 and ragged["prompt_len"] == 1024


def test_lengths_and_batch_must_agree():
    with pytest.raises(InputError, match="--batch 3 differs from the 2 prompt lengths"):
        make_workload(3, 128, 8, (16, 32))
    with pytest.raises(InputError, match="--prompt"):
        make_workload(1, 128, 8, (16, 0))
    with pytest.raises(InputError, match="symbolic length T"):
        concrete = compress("tiny-llama", "dense", batch=2, prompt_len=16)
        prefill_works(concrete.prefill, Workload(2, 16, 1, (8, 16)), DType.F16, True)
