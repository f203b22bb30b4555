"""bench/faults.py, short: kill -9 twice (after a random step, during a checkpoint write), corrupt
the newest checkpoint three ways; every rerun ends bit-identical to the reference run."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import faults  # noqa: E402


@pytest.mark.slow
def test_kills_and_corruptions_recover_bit_identically(tmp_path, capsys):
    # Three kills: the bench makes every third one during a checkpoint write.
    summary = faults.main(["--kills", "3", "--seed", "1", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert summary["identical"] == 3, out
    assert summary["fell_back"] == summary["corruptions"] == 3, out
    assert "during a checkpoint write" in out and "while writing checkpoint" in out
    assert len(summary["params_sha256"]) == 64
