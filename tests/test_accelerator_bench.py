"""bench/accelerator.py on the CPU: the tiny run's table and JSON, the time budget, the wheels."""

import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace

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
        env=dict(os.environ, JAX_NUM_CPU_DEVICES="4"),  # shard_embeddings splits over 4
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
    assert r["platform"] == "cpu" and r["sizes"] == "tiny"
    assert r["skipped"] == [] and r["failed"] == []
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

    trace, measured = r["breakdown"]
    pieces = ("embedding_gather_ms", "forward_backward_ms", "optimizer_update_ms")
    for b in (trace, measured):
        assert (b["model"], b["batch"], b["dtype"]) == ("mmoe", 64, "bfloat16")
        assert all(b[k] > 0 for k in pieces) and b["full_step_ms"] > 0
    # The trace's ops of the gather and the update carry train_step's named scopes.
    assert trace["method"] == "profiler trace" and trace["traced_steps"] == 3
    assert trace["devices"] == 4
    parts = sum(trace[k] for k in pieces) + trace["other_ms"]
    assert trace["sum_ms"] == pytest.approx(parts)
    assert measured["method"] == "measured"
    assert measured["sum_ms"] == pytest.approx(sum(measured[k] for k in pieces))
    assert "(profiler trace: op time per step and device" in stdout
    assert "(measured: separately jitted pieces)" in stdout

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
    assert r["failed"] == []
    skipped = [s["what"] for s in r["skipped"]]
    assert skipped[0] == "bf16 GEMM peak"
    for model in accelerator.MODELS:
        for dtype in ("float32", "bfloat16"):
            for shard in (False, True):
                assert f"train {model} batch=64 {dtype} shard_embeddings={shard}" in skipped
            assert f"eval {model} {dtype}" in skipped
    assert "dtype AUC check" in skipped
    assert "trace breakdown mmoe batch=64 bfloat16" in skipped
    assert "measured breakdown mmoe batch=64 bfloat16" in skipped
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


GATHER = "jit(train_step)/embedding_gather/jit(_unique_sorted_mask)/sort"
BACKWARD = "jit(train_step)/transpose(jvp())/dot_general"
UPDATE = "jit(train_step)/optimizer_update/scatter"
HLO = f"""
ENTRY %main.1 (p: f32[8]) -> f32[8] {{
  %sort.4 = s32[64]{{0}} sort(%x), metadata={{op_name="{GATHER}" source_file="x.py"}}
  %fusion.2 = f32[8]{{0}} fusion(%a), kind=kLoop, metadata={{op_name="{BACKWARD}"}}
  ROOT %scatter.7 = f32[8]{{0}} scatter(%b), metadata={{op_name="{UPDATE}"}}
  %copy.3 = f32[8]{{0}} copy(%c)
}}
"""


def test_trace_ops_are_attributed_by_their_name_scope():
    names = accelerator.hlo_op_names(HLO)
    assert names == {"sort.4": GATHER, "fusion.2": BACKWARD, "scatter.7": UPDATE}
    assert [accelerator.op_scope(names.get(k)) for k in ("sort.4", "fusion.2", "scatter.7")] == [
        "embedding_gather",
        "forward_backward",
        "optimizer_update",
    ]
    assert accelerator.op_scope(names.get("copy.3")) == "other"
    assert accelerator.op_scope("jit(train_step)/embedding_gather_extra/add") == "forward_backward"

    def event(op, ns, module="jit_train_step", ordinal=0):
        stats = {"hlo_op": op, "hlo_module": module, "device_ordinal": ordinal}
        return SimpleNamespace(stats=list(stats.items()), duration_ns=ns)

    def plane(name, *events):
        return SimpleNamespace(name=name, lines=[SimpleNamespace(events=list(events))])

    host = plane("/host:CPU", event("sort.4", 100.0), event("fusion.2", 50.0, ordinal=1))
    profile = SimpleNamespace(
        planes=[host, plane("/host:CPU2", event("scatter.7", 7.0, module="jit_eval_step"))]
    )
    ns, devices = accelerator.attribute_trace(profile, names)
    assert ns == {"embedding_gather": 100.0, "forward_backward": 50.0} and devices == 2
    # Device planes (GPU kernels) win over host-side events of the same ops.
    gpu = plane("/device:GPU:0", event("fusion.2", 30.0), event("copy.3", 5.0))
    ns, devices = accelerator.attribute_trace(SimpleNamespace(planes=[host, gpu]), names)
    assert ns == {"forward_backward": 30.0, "other": 5.0} and devices == 1


def test_a_failing_part_is_recorded_and_the_run_goes_on(tmp_path):
    out = tmp_path / "partial.json"
    args = accelerator.parse_args(["--sizes", "tiny", "--out", str(out)])
    sys.path.insert(0, ROOT)
    bench = accelerator._Bench(args)

    def out_of_memory():
        raise RuntimeError("RESOURCE_EXHAUSTED: out of memory\nmore detail")

    bench.part("train mmoe batch=64 float32 shard_embeddings=False", out_of_memory, "train")
    bench.part("eval mmoe float32", lambda: {"rows_per_sec": 1.0}, "eval")
    bench.part("dtype AUC check", lambda: {"within_tolerance": True}, "auc")
    assert bench.result["failed"] == [
        {
            "what": "train mmoe batch=64 float32 shard_embeddings=False",
            "error": "RuntimeError: RESOURCE_EXHAUSTED: out of memory",
        }
    ]
    assert bench.result["train"] == [] and bench.result["eval"] == [{"rows_per_sec": 1.0}]
    with open(out) as f:  # rewritten after every part
        saved = json.load(f)
    assert saved["auc"] == {"within_tolerance": True} and len(saved["failed"]) == 1


def test_budget_skips_once_the_time_left_is_shorter_than_the_last_part():
    budget = accelerator.Budget(3600.0)
    assert not budget.over("first part") and budget.skipped == []
    budget.last = 3600.0  # the part before took the whole budget: the next cannot fit
    assert budget.over("next part")
    (skip,) = budget.skipped
    assert skip["what"] == "next part"
    assert (
        "time budget of 3600 s" in skip["reason"]
        and "the part before took 3600 s" in skip["reason"]
    )
