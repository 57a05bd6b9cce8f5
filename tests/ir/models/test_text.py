"""The built-in corpus split, text files and sentence splitting."""

from __future__ import annotations

from pydoc_data.topics import topics

import pytest

from sparseflow.ir.errors import InputError
from sparseflow.ir.models.text import (
    CORPUS_SPLITS,
    corpus_text,
    corpus_topics,
    read_text,
    split_sentences,
)


def test_corpus_splits_are_disjoint_cover_every_topic_and_are_deterministic():
    parts = {split: corpus_topics(split) for split in CORPUS_SPLITS}
    names = [set(part) for part in parts.values()]
    assert set.union(*names) == set(topics)
    assert sum(len(n) for n in names) == len(topics)
    assert all(parts[s] == corpus_topics(s) for s in CORPUS_SPLITS)
    sizes = {s: len(corpus_text(s)) for s in CORPUS_SPLITS}
    assert sizes["training"] > 4 * sizes["evaluation"] > 0 and sizes["calibration"] > 0


def test_unknown_split_lists_the_known_ones():
    with pytest.raises(InputError, match="training, calibration, evaluation"):
        corpus_topics("test")


def test_read_text_round_trips_utf8(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("Größe of a café.\n", encoding="utf-8")
    assert read_text(path) == "Größe of a café.\n"


@pytest.mark.parametrize(
    "content, message", [(b"", "empty"), (b" \n\t\n", "empty"), (b"abc \xff\xfe", "not UTF-8")]
)
def test_bad_text_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as err:
        read_text(path)
    assert "bad.txt" in str(err.value)


def test_missing_text_file_names_it(tmp_path):
    with pytest.raises(InputError, match="nothing.txt: cannot read"):
        read_text(tmp_path / "nothing.txt")


def test_sentences_split_after_punctuation_and_drop_short_fragments():
    text = (
        "Heading\n*******\n\nThe first sentence is here. A second one follows\n"
        'across a line break! "Quoted" starts the third one here?\n\n'
        "x = 1\n\nVersion 3.11.2 keeps its dots together in this sentence."
    )
    assert split_sentences(text) == [
        "The first sentence is here.",
        "A second one follows across a line break!",
        '"Quoted" starts the third one here?',
        "Version 3.11.2 keeps its dots together in this sentence.",
    ]
