"""Tests for mtl_jax._sorting: the fast stable argsort gauc / top-n exactness rests on."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl_jax._sorting import run_starts, stable_argsort


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.sampled_from([0.0, -0.0, 1.5, -1.5, np.inf, -np.inf, 1e-40, -1e-40]),
            st.floats(allow_nan=False, width=32),
            st.floats(allow_nan=False),
        ),
        min_size=1,
        max_size=60,
    ),
)
def test_stable_argsort_matches_numpy_for_floats(values):
    for dtype in (np.float64, np.float32):
        with np.errstate(over="ignore"):
            x = np.array(values).astype(dtype)
        np.testing.assert_array_equal(stable_argsort(x), np.argsort(x, kind="stable"))


@pytest.mark.parametrize(
    "x",
    [
        np.array([3, 1, 2, 1, 3, 0], dtype=np.int8),
        np.array([-128, 127, 0, -128, 5], dtype=np.int8),
        np.array([2**40, -(2**40), 7, 7, 2**40]),  # range >= 2**32: fallback
        np.array([2**32 - 1, 0, 5, 0], dtype=np.uint32),
        np.array([2**63, 2**63 + 5, 2**63], dtype=np.uint64),
        np.array([-(2**63), -(2**63) + 3, -(2**63)], dtype=np.int64),
        np.array([True, False, True, False]),
        np.array(["b", "a", "b", "c"]),
    ],
)
def test_stable_argsort_matches_numpy_for_other_dtypes(x):
    np.testing.assert_array_equal(stable_argsort(x), np.argsort(x, kind="stable"))


def test_run_starts_of_key_tuples():
    groups = np.array([1, 1, 1, 2, 2, 3])
    scores = np.array([0.1, 0.1, 0.5, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(run_starts(groups), [0, 3, 5])
    np.testing.assert_array_equal(run_starts(groups, scores), [0, 2, 3, 5])
    assert run_starts(np.array([])).shape == (0,)
