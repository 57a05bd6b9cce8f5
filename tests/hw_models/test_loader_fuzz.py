"""Fuzz the loader: any mutation of a valid model gives a valid model or an InputError."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparseflow.hw_models.loader import (
    hw_from_dict,
    hw_from_text,
    hw_to_dict,
    list_hw,
    load_hw,
    resolve_path,
)
from sparseflow.hw_models.schema import HardwareModel
from sparseflow.ir.errors import InputError

PRESET_DICTS = {name: hw_to_dict(load_hw(name)) for name in list_hw()}
PRESET_TEXTS = {name: resolve_path(name) for name in list_hw()}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["fpga", "gpu", "cpu", "dense", "flightllm", "2:4", "fp16", "1e9"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def section_paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Return the key paths of every entry of a nested dict."""
    paths = []
    for key, value in data.items():
        paths.append((*prefix, key))
        if isinstance(value, dict):
            paths += section_paths(value, (*prefix, key))
    return paths


def assert_model_or_input_error(build) -> None:
    """Call `build`; it must return a model or raise InputError, nothing else."""
    try:
        result = build()
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(result, HardwareModel)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(sorted(PRESET_DICTS)))
def test_dict_mutations_give_a_model_or_input_error(data: st.DataObject, name: str) -> None:
    tree = copy.deepcopy(PRESET_DICTS[name])
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(section_paths(tree)))
        parent = tree
        for key in path[:-1]:
            parent = parent[key]
        action = data.draw(st.sampled_from(["set", "delete", "add"]))
        if action == "set":
            parent[path[-1]] = data.draw(values)
        elif action == "delete":
            del parent[path[-1]]
        else:
            parent[data.draw(st.text(max_size=6))] = data.draw(values)
    assert_model_or_input_error(lambda: hw_from_dict(tree, "fuzz.yaml"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(sorted(PRESET_TEXTS)))
def test_text_mutations_give_a_model_or_input_error(data: st.DataObject, name: str) -> None:
    with open(PRESET_TEXTS[name], encoding="utf-8") as handle:
        text = handle.read()
    for _ in range(data.draw(st.integers(1, 3))):
        start = data.draw(st.integers(0, len(text)))
        stop = data.draw(st.integers(start, min(len(text), start + 40)))
        insert = data.draw(st.text(alphabet=st.characters(codec="utf-8"), max_size=12))
        text = text[:start] + insert + text[stop:]
    assert_model_or_input_error(lambda: hw_from_text(text, "fuzz.yaml"))


def test_fuzz_mutation_can_still_produce_valid_models() -> None:
    tree = copy.deepcopy(PRESET_DICTS["u280"])
    tree["clock_hz"] = 300e6
    assert hw_from_dict(tree, "fuzz.yaml").clock_hz == 300e6
