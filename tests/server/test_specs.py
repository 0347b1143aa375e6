"""server/specs.py (pure): RFC 7396's merge patch, on the RFC's own examples and with
hypothesis, and the diff of two release documents."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.specs import Change, diff, document, merge_patch

# RFC 7396, Appendix A: (original, patch, result)
RFC_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "result"), RFC_EXAMPLES)
def test_the_rfc_examples(original: Any, patch: Any, result: Any) -> None:
    before = copy.deepcopy(original)
    assert merge_patch(original, patch) == result
    assert original == before  # the target is not changed


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=10,
)
documents = st.dictionaries(st.sampled_from("abcd"), json_values, max_size=4)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


# the machine is shared: slow draws are the machine's, not the strategy's
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents, documents)
def test_a_patch_applied_twice_changes_nothing_more(target: Any, patch: Any) -> None:
    once = merge_patch(target, patch)
    assert merge_patch(once, patch) == once


# the machine is shared: slow draws are the machine's, not the strategy's
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents, documents)
def test_a_patch_then_the_diff_names_only_what_the_patch_touched(target: Any, patch: Any) -> None:
    result = merge_patch(target, patch)
    touched = {"/" + key for key in patch}
    for change in diff(target, result):
        assert "/" + change.path.split("/")[1] in touched, (change, patch)


# the machine is shared: slow draws are the machine's, not the strategy's
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_nothing_differs_from_itself(doc: Any) -> None:
    assert diff(doc, doc) == []
    assert diff(doc, _without_nulls(doc)) == []  # a null key counts as absent


def test_the_diff_of_two_release_documents() -> None:
    old = document(
        {"image": "web:v1", "env": {"A": "1", "B": "2"}, "ports": [{"container": 80}]},
        {"max_parallel": 1, "healthy_deadline": 60.0},
        {},
    )
    new = document(
        {"image": "web:v2", "env": {"A": "1", "C": "3"}, "ports": [{"container": 81}]},
        {"max_parallel": 1, "healthy_deadline": 60},
        {"labels": {"role": "web"}},
    )
    assert diff(old, new) == [
        Change("/env/B", "remove", old="2"),
        Change("/env/C", "add", new="3"),
        Change("/hosts", "add", new={"labels": {"role": "web"}}),
        Change("/image", "change", "web:v1", "web:v2"),
        Change("/ports", "change", [{"container": 80}], [{"container": 81}]),
    ]  # 60.0 and 60 are the same deadline; lists compare whole


def test_paths_are_json_pointers() -> None:
    assert diff({"labels": {"a/b~c": "1"}}, {"labels": {"a/b~c": "2"}}) == [
        Change("/labels/a~1b~0c", "change", "1", "2")
    ]
    assert diff(True, 1) == [Change("/", "change", True, 1)]
