"""bench/profile_step.py runs on the CPU at small sizes and accounts for the step's op time."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "bench"))

import profile_step  # noqa: E402


@pytest.mark.parametrize("dedup", ["host", "step"])
def test_profile_step_small(capsys, dedup):
    out = profile_step.main(
        [
            "--batch", "64", "--steps", "2", "--rows", "640", "--top", "5", "--dedup", dedup,
            "--set", "data.synthetic.vocab_scale=0.01",
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "by category (ms/step)" in printed
    assert out["wall_ms"] > 0 and out["op_ms"] > 0
    assert set(out["categories"]) <= set(profile_step.CATEGORIES)
    assert out["categories"]["gemm"] > 0
    # The categories partition the ops.
    assert sum(out["categories"].values()) == pytest.approx(sum(out["ops"].values()))
    # In-step dedup sorts inside the step's embedding_gather scope; the host's doesn't.
    has_sort = any(op.startswith("sort") for op in out["ops"])
    assert has_sort == (dedup == "step")
