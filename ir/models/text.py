"""Real text for accuracy evaluation: the built-in corpus, text files, sentences.

The built-in corpus is CPython's own documentation of the language (`pydoc_data.topics`, part
of the standard library on every machine: 79 topics and about 465 kB of English prose with
code examples in Python 3.11). It is split by topic, deterministically: the topics sorted by
name, topic i goes to `evaluation` when i % 6 == 4 (46 kB in 3.11), to `calibration` when
i % 6 == 5 (34 kB), and to `training` (385 kB, the text the example decoder learns from)
otherwise. The three parts share no topic. CPython regenerates the topics for each release,
so numbers measured on them carry the Python version they were measured with.
"""

from __future__ import annotations

import re
from pathlib import Path

from sparseflow.ir.errors import InputError

CORPUS_SPLITS = ("training", "calibration", "evaluation")
_SPLIT_OF_REMAINDER = {4: "evaluation", 5: "calibration"}
# A sentence ends at . ! or ? followed by space and a capital, a quote or a bracket.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_WORD = re.compile(r"[A-Za-z]{2,}")


def corpus_topics(split: str) -> dict[str, str]:
    """Return the documentation topics (name -> text) of one split of the built-in corpus."""
    from pydoc_data.topics import topics

    if split not in CORPUS_SPLITS:
        raise InputError(f"unknown corpus split {split!r} (known: {', '.join(CORPUS_SPLITS)})")
    names = sorted(topics)
    return {
        n: topics[n]
        for i, n in enumerate(names)
        if _SPLIT_OF_REMAINDER.get(i % 6, "training") == split
    }


def corpus_text(split: str) -> str:
    """Return one split of the built-in corpus as one text, topics separated by blank lines."""
    return "\n\n".join(corpus_topics(split).values())


def read_text(path: str | Path) -> str:
    """Return the UTF-8 text of a file; InputError naming the file when it cannot be read, is
    not UTF-8 or holds no text."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as err:
        raise InputError(f"text file {path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise InputError(f"text file {path}: not UTF-8 (byte {err.start})") from None
    if not text.strip():
        raise InputError(f"text file {path}: empty")
    return text


def split_sentences(text: str, min_words: int = 4) -> list[str]:
    """Return the sentences of `text` that have at least `min_words` words, in order.

    Paragraphs are separated by blank lines; within one, lines are joined and split after
    sentence-ending punctuation. Headings, rules and code lines with fewer words drop out.
    """
    sentences = []
    for paragraph in re.split(r"\n\s*\n", text):
        joined = " ".join(paragraph.split())
        for sentence in _SENTENCE_END.split(joined):
            if len(_WORD.findall(sentence)) >= min_words:
                sentences.append(sentence)
    return sentences
