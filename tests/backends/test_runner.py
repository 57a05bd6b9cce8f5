"""The request runner: greedy generation, teacher forcing, and the interpreter's kernel hook."""

from __future__ import annotations

import numpy as np
import pytest

from sparseflow.backends.runner import check_request, generate, prompt_ids, rel_error
from sparseflow.ir.errors import InputError
from sparseflow.ir.interpreter import Interpreter
from sparseflow.ir.models.zoo import load_model


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-llama", "prefill"), load_model("tiny-llama", "decode")


def test_decode_steps_match_one_long_prefill(tiny):
    prefill, decode = tiny
    ids = prompt_ids(256, 1, 5, seed=3)
    gen = generate(Interpreter(prefill), Interpreter(decode), prefill, ids, gen_len=4)
    assert gen.tokens.shape == (1, 4)
    full = np.concatenate([ids, gen.tokens[:, :-1]], axis=1)
    whole = generate(Interpreter(prefill), None, prefill, full, gen_len=0)
    stepwise = np.concatenate([gen.logits[0], *gen.logits[1:]], axis=1)
    assert rel_error(stepwise, whole.logits[0]) < 1e-5
    assert np.array_equal(gen.tokens[:, 0], np.argmax(gen.logits[0][:, -1], axis=-1))


def test_forced_tokens_are_fed():
    prefill, decode = load_model("tiny-llama", "prefill", 2), load_model("tiny-llama", "decode", 2)
    ids = prompt_ids(256, 2, 3, seed=1)
    forced = np.random.default_rng(0).integers(0, 256, (2, 3))
    gen = generate(Interpreter(prefill), Interpreter(decode), prefill, ids, 3, forced=forced)
    assert np.array_equal(gen.tokens, forced)
    assert len(gen.logits) == 3 and gen.decode_tokens_per_s > 0


def test_kernel_replaces_reference_and_never_decodes_its_weight(tiny):
    prefill, _ = tiny
    w = prefill.weights.dense("lm_head")
    calls = []

    def lm_head(xs):
        calls.append(len(xs))
        return (xs[0] @ w.T * 2).astype(np.float32)

    inputs = {"ids": np.array([[1, 2, 3]]), "pos": np.arange(3)}
    plain = Interpreter(prefill).run(inputs)["logits"]
    hooked = Interpreter(prefill, kernels={"logits": lm_head})
    doubled = hooked.run(inputs)["logits"]
    assert calls == [1]
    assert "lm_head" not in hooked._dense
    np.testing.assert_allclose(doubled, 2 * plain, rtol=1e-5, atol=1e-6)


def test_kernel_for_unknown_node_is_an_error(tiny):
    with pytest.raises(InputError, match="no_such_node"):
        Interpreter(tiny[0], kernels={"no_such_node": lambda xs: xs[0]})


def test_rel_error_is_relative():
    b = np.array([3.0, 4.0])
    assert rel_error(b + np.array([0.3, 0.4]), b) == pytest.approx(0.1)


def test_request_sizes_follow_one_rule():
    check_request(1, 1, 0)  # gen 0: the prefill alone (run, compile)
    with pytest.raises(InputError, match=r"option --gen \(gen_len\): must be an integer >= 1"):
        check_request(1, 1, 0, min_gen_len=1)  # an estimate reports decode steps
    for sizes, option in (((0, 1, 1), "--batch"), ((1, 0, 1), "--prompt"), ((1, 1, -1), "--gen")):
        with pytest.raises(InputError, match=f"option {option} "):
            check_request(*sizes)
    with pytest.raises(InputError, match="--prompt.*got 2.5"):
        check_request(1, 2.5)
    with pytest.raises(InputError, match="--batch.*got 0"):
        prompt_ids(256, 0, 4)
