"""Checkpoint tokenizers and sentence pooling on the real MiniLM and trained decoder folders,
checked against transformers and sentence-transformers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from sparseflow.ir.errors import InputError
from sparseflow.ir.interpreter import Interpreter, prefill_inputs
from sparseflow.ir.models.tokenizer import Pooling, load_pooling, load_tokenizer
from sparseflow.ir.models.zoo import load_model

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A generator function returns an iterator.",
    "word " * 300,  # longer than max_seq_length: cut to 256 tokens
]


@pytest.fixture(scope="module")
def minilm(minilm_folder):
    graph = load_model(str(minilm_folder), "prefill")
    return graph, load_tokenizer(minilm_folder, graph)


def test_minilm_tokenizer_frames_sentences_and_cuts_them(minilm):
    _, tok = minilm
    assert (tok.prefix, tok.suffix, tok.max_tokens) == ((101,), (102,), 256)
    ids = tok.sentence(SENTENCES[0])
    assert ids[0] == 101 and ids[-1] == 102 and 5 < len(ids) < 20
    assert len(tok.sentence(SENTENCES[2])) == 256


def test_rows_are_consecutive_framed_chunks(minilm):
    _, tok = minilm
    text = " ".join(SENTENCES[:2] * 20)
    rows = tok.rows(text, 16, 3)
    stream = tok.stream(text)
    assert rows.shape == (3, 16) and (rows[:, 0] == 101).all() and (rows[:, -1] == 102).all()
    np.testing.assert_array_equal(rows[:, 1:-1].ravel(), stream[: 3 * 14])
    with pytest.raises(InputError, match="fewer than one row"):
        tok.rows("short", 16, 3)


def test_minilm_hidden_states_match_transformers(minilm, minilm_folder):
    from transformers import BertModel

    graph, tok = minilm
    model = BertModel.from_pretrained(minilm_folder).eval()
    runner = Interpreter(graph)
    for sentence in SENTENCES:
        ids = tok.sentence(sentence)[None]
        ours = runner.run(prefill_inputs(graph, ids))["hidden"]
        with torch.no_grad():
            theirs = model(torch.from_numpy(ids)).last_hidden_state.numpy()
        np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_minilm_embeddings_match_sentence_transformers(minilm, minilm_folder):
    from sentence_transformers import SentenceTransformer

    graph, tok = minilm
    pooling = load_pooling(minilm_folder)
    assert pooling == Pooling("mean_tokens", normalize=True)
    runner = Interpreter(graph)
    ours = [
        pooling(runner.run(prefill_inputs(graph, tok.sentence(s)[None]))["hidden"][0])
        for s in SENTENCES
    ]
    theirs = SentenceTransformer(str(minilm_folder), device="cpu").encode(SENTENCES)
    np.testing.assert_allclose(np.stack(ours), theirs, atol=1e-4)


def test_trained_decoder_logits_match_transformers(tiny_decoder_folder):
    from transformers import LlamaForCausalLM

    graph = load_model(str(tiny_decoder_folder), "prefill")
    tok = load_tokenizer(tiny_decoder_folder, graph)
    assert tok.prefix == tok.suffix == ()
    ids = tok.stream(SENTENCES[1] + " " + SENTENCES[0])[None]
    ours = Interpreter(graph).run(prefill_inputs(graph, ids))["logits"]
    with torch.no_grad():
        theirs = LlamaForCausalLM.from_pretrained(tiny_decoder_folder)(torch.from_numpy(ids))
    np.testing.assert_allclose(ours, theirs.logits.numpy(), atol=1e-4)


@pytest.mark.parametrize("mode", ["mean_tokens", "cls_token", "max_tokens", "mean_sqrt_len_tokens"])
def test_pooling_modes(mode, tmp_path):
    states = np.random.default_rng(3).normal(size=(7, 5)).astype(np.float32)
    expected = {
        "mean_tokens": states.mean(0),
        "cls_token": states[0],
        "max_tokens": states.max(0),
        "mean_sqrt_len_tokens": states.sum(0) / np.sqrt(7),
    }[mode]
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({f"pooling_mode_{mode}": True}))
    modules = [{"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    np.testing.assert_allclose(load_pooling(tmp_path)(states), expected, rtol=1e-6)
    unit = Pooling(mode, normalize=True)(states)
    np.testing.assert_allclose(unit, expected / np.linalg.norm(expected), rtol=1e-6)


def test_folder_without_modules_gets_plain_mean(tmp_path):
    assert load_pooling(tmp_path) == Pooling("mean_tokens", normalize=False)


def test_missing_tokenizer_names_the_folder(tiny_decoder_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_decoder_folder, folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(InputError, match="no tokenizer.json"):
        load_tokenizer(folder, load_model(str(folder), "prefill"))


def test_tokenizer_of_another_model_names_the_file(tiny_decoder_folder, minilm_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_decoder_folder, folder)
    shutil.copy(minilm_folder / "tokenizer.json", folder / "tokenizer.json")
    with pytest.raises(InputError, match="tokenizer.json: token id 30521 is beyond"):
        load_tokenizer(folder, load_model(str(folder), "prefill"))


def test_unreadable_tokenizer_names_the_file(tiny_decoder_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_decoder_folder, folder)
    (folder / "tokenizer.json").write_text("{not json")
    with pytest.raises(InputError, match="tokenizer.json: not a readable tokenizer"):
        load_tokenizer(folder, load_model(str(folder), "prefill"))
