"""`evaluate` on real checkpoints and real text: the all-MiniLM-L6-v2 encoder and the trained
tiny decoder. Orderings checked are the ones the literature leads us to expect and that hold
here with a wide margin (measured values in docs/eval.md)."""

from __future__ import annotations

import numpy as np
import pytest

from sparseflow.backends.evaluate import EvalOptions, evaluate
from sparseflow.ir.errors import InputError
from sparseflow.passes.recipe import load_recipe, shorthand_recipe

ENCODER_OPTIONS = EvalOptions(max_sentences=48, calibration_rows=8)
DECODER_OPTIONS = EvalOptions(max_tokens=2048)
SHORTHANDS = {
    "int8": (None, "int8"),
    "int4:channel": (None, "int4:channel"),
    "int4:g32": (None, "int4:g32"),
    "int4:g32:gptq": (None, "int4:g32:gptq"),
    "2:4": ("2:4", None),
}


def reports(folder, options, names):
    return {
        name: evaluate(str(folder), shorthand_recipe(*SHORTHANDS[name]), options) for name in names
    }


@pytest.fixture(scope="module")
def minilm(minilm_folder):
    return reports(minilm_folder, ENCODER_OPTIONS, SHORTHANDS)


@pytest.fixture(scope="module")
def decoder(tiny_decoder_folder):
    result = reports(tiny_decoder_folder, DECODER_OPTIONS, SHORTHANDS)
    result["dense"] = evaluate(str(tiny_decoder_folder), load_recipe("dense"), DECODER_OPTIONS)
    return result


def test_minilm_int8_keeps_embeddings_and_int4_channel_loses_more(minilm):
    int8, int4 = minilm["int8"], minilm["int4:channel"]
    assert int8["kind"] == "encoder" and int8["sentences"] == 48
    assert int8["pooling"] == "mean_tokens" and int8["normalized"]
    assert int8["cosine_mean"] > 0.99 and int8["cosine_min"] > 0.95
    assert int4["cosine_mean"] < int8["cosine_mean"] - 0.02
    assert int4["retrieval_agreement"] < int8["retrieval_agreement"]
    assert int4["weight_bytes"] < int8["weight_bytes"] < int8["dense_weight_bytes"]


def test_minilm_orderings(minilm):
    rtn, gptq = minilm["int4:g32"], minilm["int4:g32:gptq"]
    assert gptq["cosine_mean"] > rtn["cosine_mean"]
    assert gptq["output_rel_error_vs_dense"] < 0.9 * rtn["output_rel_error_vs_dense"]
    assert (
        minilm["int8"]["cosine_mean"] > rtn["cosine_mean"] > minilm["int4:channel"]["cosine_mean"]
    )
    assert minilm["2:4"]["cosine_mean"] < minilm["int8"]["cosine_mean"] - 0.1


def test_layer_errors_cover_every_layer_and_end_at_the_output(minilm):
    rows = minilm["int4:g32"]["layer_errors"]
    assert [r["layer"] for r in rows] == list(range(6))
    assert all(0 < r["rel_error"] < 1 for r in rows)
    assert rows[-1]["rel_error"] == minilm["int4:g32"]["output_rel_error_vs_dense"]


def test_trained_decoder_learned_and_int8_keeps_its_perplexity(decoder):
    dense, int8 = decoder["dense"], decoder["int8"]
    assert dense["kind"] == "decoder" and dense["scored_tokens"] == 2047
    assert dense["perplexity_dense"] < dense["uniform_perplexity"] / 10
    assert dense["perplexity"] == dense["perplexity_dense"] and dense["top1_agreement"] == 1.0
    assert dense["output_rel_error_vs_dense"] == 0.0
    assert int8["perplexity"] == pytest.approx(int8["perplexity_dense"], rel=0.02)


def test_trained_decoder_orderings(decoder):
    rtn, gptq, int8 = decoder["int4:g32"], decoder["int4:g32:gptq"], decoder["int8"]
    assert gptq["output_rel_error_vs_dense"] < 0.95 * rtn["output_rel_error_vs_dense"]
    assert gptq["top1_agreement"] > rtn["top1_agreement"]
    assert (
        int8["top1_agreement"] > rtn["top1_agreement"] > decoder["int4:channel"]["top1_agreement"]
    )
    assert int8["output_rel_error_vs_dense"] < rtn["output_rel_error_vs_dense"]
    assert decoder["2:4"]["perplexity"] > 1.05 * int8["perplexity"]


def test_host_cpu_kernels_agree_with_the_reference(tiny_decoder_folder):
    options = EvalOptions(target="host-cpu", window=32, stride=16, max_tokens=97)
    report = evaluate(str(tiny_decoder_folder), load_recipe("int8"), options)
    assert report["target"] == "host-cpu" and report["windows"] == 6  # 0, 16, .., 64 and 65
    assert report["output_rel_error_vs_reference"] < 1e-3
    on_reference = EvalOptions(window=32, stride=16, max_tokens=97)
    reference = evaluate(str(tiny_decoder_folder), load_recipe("int8"), on_reference)
    assert report["perplexity"] == pytest.approx(reference["perplexity"], rel=1e-3)
    assert "output_rel_error_vs_reference" not in reference


def test_u280_functional_model_runs_flightllm(tiny_decoder_folder):
    options = EvalOptions(target="u280", window=16, stride=8, max_tokens=17)
    report = evaluate(str(tiny_decoder_folder), load_recipe("flightllm"), options)
    assert report["windows"] == 2 and report["scored_tokens"] == 16
    assert report["output_rel_error_vs_reference"] < 1e-2
    assert report["perplexity"] > report["perplexity_dense"]


def test_calibration_text_changes_gptq_and_must_differ_from_the_text(tiny_decoder_folder, tmp_path):
    from sparseflow.ir.models.text import corpus_text

    path = tmp_path / "cal.txt"
    path.write_text(corpus_text("training")[:20000])
    options = EvalOptions(max_tokens=600, calibration_text=str(path))
    recipe = shorthand_recipe(None, "int4:g32:gptq")
    own = evaluate(str(tiny_decoder_folder), recipe, options)
    default = evaluate(str(tiny_decoder_folder), recipe, EvalOptions(max_tokens=600))
    assert (
        own["calibration_text"] == str(path) and default["calibration_text"] == "corpus:calibration"
    )
    assert own["output_rel_error_vs_dense"] != default["output_rel_error_vs_dense"]
    same = EvalOptions(text=str(path), calibration_text=str(path))
    with pytest.raises(InputError, match="is the evaluation text"):
        evaluate(str(tiny_decoder_folder), recipe, same)


def test_layer_report_notes_the_default_int4_group_fallback():
    from sparseflow.backends.pipeline import compress_model, layer_report

    pair = compress_model("tiny-llama", shorthand_recipe(None, "int4"), 1, functional=True)
    notes = [row.get("note") for row in layer_report(pair.dense_prefill, pair.prefill)]
    assert "group size 128 does not divide K = 64: one group per row" in notes


@pytest.mark.parametrize(
    "options, message",
    [
        (EvalOptions(window=1), "option --window: must be in 2..128"),
        (EvalOptions(window=129), "option --window: must be in 2..128"),
        (EvalOptions(stride=128), "option --stride: must be in 1..127"),
        (EvalOptions(max_tokens=100), "fewer than one window of 128"),
    ],
)
def test_bad_sizes_name_the_option(tiny_decoder_folder, options, message):
    with pytest.raises(InputError, match=message):
        evaluate(str(tiny_decoder_folder), load_recipe("dense"), options)


def test_built_in_models_are_refused():
    with pytest.raises(InputError, match="eval needs a checkpoint folder"):
        evaluate("tiny-llama", load_recipe("dense"), EvalOptions())


def test_reports_are_deterministic(tiny_decoder_folder):
    options = EvalOptions(max_tokens=300)
    a, b = (evaluate(str(tiny_decoder_folder), load_recipe("int8"), options) for _ in range(2))
    assert a == b and np.isfinite(a["perplexity"])


def test_text_of_exactly_one_window(tiny_decoder_folder):
    options = EvalOptions(window=32, stride=16, max_tokens=32)
    report = evaluate(str(tiny_decoder_folder), load_recipe("int8"), options)
    assert report["windows"] == 1 and report["scored_tokens"] == 31
