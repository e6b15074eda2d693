"""The database-free parts of the store: diffs, document normalization, ids, cursors."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsunagu.store import InvalidDocumentError, StoreRequestError
from tsunagu.store.config_diff import compute_diff, document_changes, same_document
from tsunagu.store.interactions import decode_cursor, encode_cursor
from tsunagu.store.types import new_id, normalize_document

KINDS = ("numbers", "flows", "queues")

json_leaf = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=8,
)
documents = st.dictionaries(st.sampled_from("abc"), json_value, max_size=3)
configs = st.dictionaries(
    st.sampled_from(KINDS),
    st.dictionaries(st.sampled_from(["x", "y", "z"]), documents, max_size=3),
    max_size=3,
)


def _apply(current: dict[str, dict[str, Any]], diff_items: Any) -> dict[str, dict[str, Any]]:
    out = copy.deepcopy(current)
    for item in diff_items:
        entities = out.setdefault(item.kind, {})
        if item.operation == "delete":
            del entities[item.name]
        else:
            entities[item.name] = item.after
    return {k: v for k, v in out.items() if v}


@settings(max_examples=200, deadline=None)
@given(configs, configs)
def test_applying_the_diff_reaches_the_desired_state(current: Any, desired: Any) -> None:
    diff = compute_diff(current, desired, kind_order=KINDS, base_revision=0, dry_run=True)
    result = _apply(current, diff.items)
    for kind in KINDS:
        expected = desired.get(kind, current.get(kind, {}))
        got = result.get(kind, {})
        assert got.keys() == expected.keys()
        assert all(same_document(got[n], expected[n]) for n in got)
    again = compute_diff(result, desired, kind_order=KINDS, base_revision=0, dry_run=True)
    assert again.empty


@settings(max_examples=200, deadline=None)
@given(documents, documents)
def test_document_changes_is_empty_exactly_for_equal_documents(a: Any, b: Any) -> None:
    changes = document_changes(a, b)
    assert (changes == []) == (a == b and _same_bools(a, b))
    assert document_changes(a, copy.deepcopy(a)) == []


def _same_bools(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return all(_same_bools(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return all(_same_bools(x, y) for x, y in zip(a, b, strict=True))
    return isinstance(a, bool) == isinstance(b, bool)


def test_a_flag_turned_into_a_number_is_a_change() -> None:
    assert document_changes({"on": True}, {"on": 1}) != []
    assert document_changes({"n": 1}, {"n": 1.0}) == []


def test_normalize_document() -> None:
    doc = {"d": date(2025, 1, 1), "t": (1, 2), "n": {"x": [None, 1.5]}}
    assert normalize_document(doc) == {"d": "2025-01-01", "t": [1, 2], "n": {"x": [None, 1.5]}}
    with pytest.raises(InvalidDocumentError, match=r"\$\.n\.x\[1\]"):
        normalize_document({"n": {"x": [1, float("inf")]}})
    with pytest.raises(InvalidDocumentError, match="key 3"):
        normalize_document({"a": {3: "x"}})
    with pytest.raises(InvalidDocumentError, match="set"):
        normalize_document({"a": {1, 2}})


def test_ids_sort_by_time_and_differ() -> None:
    t = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
    ids = [new_id(t + timedelta(milliseconds=n)) for n in range(50)]
    assert ids == sorted(ids)
    assert len({new_id(t) for _ in range(100)}) == 100
    assert all(len(i) == 26 for i in ids)
    with pytest.raises(StoreRequestError):
        new_id(datetime(2025, 4, 1, 9, 0))


@given(st.datetimes(timezones=st.just(UTC)), st.text(min_size=1, max_size=36))
def test_cursor_round_trip(at: datetime, interaction_id: str) -> None:
    assert decode_cursor(encode_cursor(at, interaction_id)) == (at, interaction_id)


@pytest.mark.parametrize("cursor", ["", "!!!", "W10", "WyJ4IiwgMV0", "eyJhIjogMX0"])
def test_damaged_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(StoreRequestError, match="cursor"):
        decode_cursor(cursor)
