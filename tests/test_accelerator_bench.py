"""bench/accelerator.py on the CPU: the tiny run's table and JSON, the time budget, the wheels."""

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "bench", "accelerator.py")
sys.path.insert(0, os.path.join(ROOT, "bench"))

import accelerator  # noqa: E402  (imports no jax at module level)


def _run(tmp_path, *flags):
    out = tmp_path / "accelerator.json"
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--platform", "cpu", "--sizes", "tiny", "--out", str(out), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out) as f:
        return proc.stdout, json.load(f)


@pytest.mark.slow
def test_tiny_cpu_run_prints_the_table_and_writes_the_json(tmp_path):
    stdout, r = _run(tmp_path, "--models", "mmoe", "--batches", "64", "--auc-steps", "4")
    assert r["platform"] == "cpu" and r["sizes"] == "tiny" and r["skipped"] == []
    assert r["gemm"]["dtype"] == "bfloat16" and r["gemm"]["gflops"] > 0

    cells = {
        (row["model"], row["batch"], row["dtype"], row["shard_embeddings"]) for row in r["train"]
    }
    assert cells == {("mmoe", 64, d, s) for d in ("float32", "bfloat16") for s in (False, True)}
    for row in r["train"]:
        assert row["examples_per_sec"] == pytest.approx(64 / (row["ms_per_step"] / 1000))
        assert row["examples_per_sec"] > 0 and 0 < row["pct_bf16_peak"]
        assert row["flops_per_example"] > 0
        line = (
            rf"^\s+mmoe\s+64\s+{row['dtype']}\s+{'on' if row['shard_embeddings'] else 'off'}"
            rf"\s+[\d,]+\s+[\d.]+\s+[\d.]+$"
        )
        assert re.search(line, stdout, re.M), line
    assert re.search(r"model\s+batch\s+dtype\s+shard_emb\s+ex/s\s+ms/step\s+% bf16 peak", stdout)

    (b,) = r["breakdown"]
    assert (b["model"], b["batch"], b["dtype"], b["method"]) == ("mmoe", 64, "bfloat16", "measured")
    pieces = ("embedding_gather_ms", "forward_backward_ms", "optimizer_update_ms")
    assert all(b[k] > 0 for k in pieces) and b["sum_ms"] == pytest.approx(sum(b[k] for k in pieces))
    assert b["full_step_ms"] > 0
    assert "separately jitted pieces" in stdout

    assert [(e["model"], e["dtype"]) for e in r["eval"]] == [
        ("mmoe", "float32"),
        ("mmoe", "bfloat16"),
    ]
    assert all(e["rows_per_sec"] > 0 and e["batch"] == 1024 for e in r["eval"])

    auc = r["auc"]
    assert auc["steps"] == 4 and auc["batch"] == 64 and auc["test_rows"] == 4000
    for dtype in ("float32", "bfloat16"):
        assert 0 <= auc[dtype]["click_auc"] <= 1 and 0 <= auc[dtype]["order_auc"] <= 1
    diff = auc["bfloat16"]["click_auc"] - auc["float32"]["click_auc"]
    assert auc["click_auc_diff"] == pytest.approx(diff)
    assert r["targets"]["auc_met"] == auc["within_tolerance"]
    assert r["targets"]["mmoe_bf16_batch"] == 64 and not r["targets"]["throughput_met"]
    assert "(this run is on cpu)" in stdout


def test_spent_budget_skips_every_part_with_its_reason(tmp_path):
    stdout, r = _run(tmp_path, "--budget-s", "0", "--batches", "64")
    assert r["train"] == [] and r["eval"] == [] and r["breakdown"] == [] and r["auc"] is None
    skipped = [s["what"] for s in r["skipped"]]
    assert skipped[0] == "bf16 GEMM peak"
    for model in accelerator.MODELS:
        for dtype in ("float32", "bfloat16"):
            for shard in (False, True):
                assert f"train {model} batch=64 {dtype} shard_embeddings={shard}" in skipped
            assert f"eval {model} {dtype}" in skipped
    assert "dtype AUC check" in skipped and "breakdown mmoe batch=64 bfloat16" in skipped
    assert all("time budget of 0 s spent" in s["reason"] for s in r["skipped"])
    assert stdout.count("skipped ") >= len(skipped)
    assert "not measured" in stdout and not r["targets"]["throughput_met"]


def test_wheel_requirements_and_missing_modules():
    reqs = accelerator.wheel_requirements()
    assert reqs == {
        "ml_collections": "ml-collections==1.1.0",
        "grain": "grain==0.2.18",
        "pyarrow": "pyarrow>=20,<27",
    }
    assert accelerator.missing_modules(["json", "no_such_module_x1", "no_such_pkg_x1.sub"]) == [
        "no_such_module_x1",
        "no_such_pkg_x1.sub",
    ]
    assert accelerator.missing_modules(accelerator.PREINSTALLED) == []


def test_ensure_packages_installs_only_the_missing_from_the_wheels(tmp_path, monkeypatch):
    assert accelerator.ensure_packages(str(tmp_path / "absent")) == []  # nothing missing here

    reqs = {"json": "json-never-installed", "no_such_module_x1": "no-such-dist==1.0"}
    monkeypatch.setattr(accelerator, "wheel_requirements", lambda: reqs)
    with pytest.raises(SystemExit, match=r"no wheel directory .*pip download --only-binary"):
        accelerator.ensure_packages(str(tmp_path / "absent"))
    with pytest.raises(SystemExit, match="--no-install"):
        accelerator.ensure_packages(str(tmp_path), install=False)

    calls = []
    monkeypatch.setattr(accelerator.subprocess, "run", lambda cmd, check: calls.append(cmd))
    assert accelerator.ensure_packages(str(tmp_path)) == ["no-such-dist==1.0"]
    assert calls == [
        [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(tmp_path)]
        + ["no-such-dist==1.0"]
    ]

    monkeypatch.setattr(accelerator, "PREINSTALLED", ("jax", "no_such_module_x1"))
    with pytest.raises(SystemExit, match="must already have jax"):
        accelerator.ensure_packages(str(tmp_path))
