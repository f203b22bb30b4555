"""Ablation runner: table columns, mean/std against the per-run files, resume, permutation test."""

import csv
import importlib
import json
import os

import numpy as np
import pytest

from mtl_jax import ablate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_paired_permutation_test_known_answers():
    # All 5 differences positive: only the all-plus and all-minus sign patterns are as extreme.
    assert ablate.paired_permutation_p([2, 3, 4, 5, 6], [1, 1, 1, 1, 1]) == pytest.approx(2 / 32)
    assert ablate.paired_permutation_p([1, 2, 3], [1, 2, 3]) == 1.0


@pytest.mark.slow
def test_runner_builds_the_table_and_skips_finished_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("JAX_NUM_CPU_DEVICES", "1")
    argv = [
        "--configs",
        "mmoe,mlp",
        "--seeds",
        "2",
        "--workdir",
        str(tmp_path),
        "--runlocal",
        "--parallel",
        "2",
        "--set",
        "num_steps=6",
        "eval_every_steps=100",
        "checkpoint_every_steps=100",
    ]
    ablate.main(argv)
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    assert header[:8] == [
        "model", "seeds", "flagged", "click AUC", "order AUC", "loss", "CLICK@2", "ORDER@2"
    ]  # fmt: skip
    by_name = {r[0]: dict(zip(header, r)) for r in rows[1:]}
    assert set(by_name) == {"mmoe", "mlp"}
    runs = [
        json.load(open(tmp_path / "mlp" / f"seed{s}" / "final_metrics.json"))["test"]
        for s in (0, 1)
    ]
    vals = np.array([r["click/auc"] for r in runs])
    mean, std = by_name["mlp"]["click AUC"].split(" ± ")
    assert float(mean) == pytest.approx(vals.mean(), abs=1e-4)
    assert float(std) == pytest.approx(vals.std(ddof=1), abs=1e-4)
    assert by_name["mmoe"]["click AUC vs base"] == "baseline"
    assert by_name["mlp"]["click AUC vs base"].endswith("%")
    gaps = np.array([r["order/oracle_gap"] for r in runs])
    assert float(by_name["mlp"]["order oracle gap"].split(" ± ")[0]) == pytest.approx(
        gaps.mean(), abs=1e-4
    )
    table_md = open(tmp_path / "results.md").read()
    assert "| model |" in table_md
    # A second invocation finds every run finished, trains nothing and keeps the tables (with the
    # command that made them).
    stamp = os.path.getmtime(tmp_path / "mlp" / "seed0" / "final_metrics.json")
    ablate.main([*argv[:7], "--parallel", "1", *argv[9:]])  # another command line
    assert os.path.getmtime(tmp_path / "mlp" / "seed0" / "final_metrics.json") == stamp
    assert open(tmp_path / "results.md").read() == table_md


def test_table_names_the_tasks_of_the_runs_and_the_census_config_spec(tmp_path):
    """Census runs (tasks income / never_married, no oracle): the columns follow the tasks read
    from the runs' schema.json; ``--data-config census`` runs ``configs/census.py:model=<name>``."""
    per_model = {"mmoe": [0.90, 0.91], "ple": [0.92, 0.94]}
    for name, aucs in per_model.items():
        for seed, auc in enumerate(aucs):
            d = tmp_path / name / f"seed{seed}"
            d.mkdir(parents=True)
            (d / "schema.json").write_text(json.dumps({"tasks": ["income", "never_married"]}))
            test = {
                "income/auc": auc,
                "never_married/auc": 0.98,
                "loss": 0.3,
                "income@2": 0.1,
                "never_married@2": 0.2,
            }
            (d / "final_metrics.json").write_text(json.dumps({"test": test, "val": test}))
    results = ablate.collect(str(tmp_path), ["mmoe", "ple"], [0, 1])
    tasks, types = ablate.run_tasks(str(tmp_path), results)
    assert tasks == ("income", "never_married") and types == ("binary", "binary")
    header, rows = ablate.table(results, "mmoe", tasks)
    assert header == [
        "model", "seeds", "flagged", "income AUC", "never_married AUC", "loss", "INCOME@2",
        "NEVER_MARRIED@2", "income AUC vs base", "never_married AUC vs base", "p income",
        "p never_married",
    ]  # fmt: skip
    ple = dict(zip(header, rows[1]))
    assert ple["income AUC"] == f"{0.93:.4f} ± {np.std([0.92, 0.94], ddof=1):.4f}"
    assert ple["income AUC vs base"] == f"{100 * (0.93 - 0.905) / 0.905:+.2f}%"
    assert ple["p income"] == "0.500"  # 2 seeds, both better: 2 of 4 sign patterns
    # Without user groups the hit rates are nan in every run: no column for them.
    for m in results.values():
        for t in m.values():
            t["income@2"] = t["never_married@2"] = float("nan")
    assert "INCOME@2" not in ablate.table(results, "mmoe", tasks)[0]
    assert ablate.config_spec("configs", "ple", 3, False, "census") == (
        "configs/census.py:model=ple,seed=3"
    )
    assert ablate.config_spec("configs", "ple", 3, True) == "configs/ple.py:runlocal,seed=3"


def test_a_config_variant_with_its_own_overrides():
    configs = ablate.parse_configs(
        "mmoe,multisource[model.adversarial_weight=0.0;model.shared_dim=8]"
    )
    assert configs == [
        ("mmoe", []),
        ("multisource", ["model.adversarial_weight=0.0", "model.shared_dim=8"]),
    ]
    assert ablate.variants(configs, []) == [
        ("mmoe", "mmoe", []),
        (
            "multisource[adversarial_weight=0.0,shared_dim=8]",
            "multisource",
            ["--config.model.adversarial_weight=0.0", "--config.model.shared_dim=8"],
        ),
    ]
    with pytest.raises(SystemExit, match="not key=value"):
        ablate.parse_configs("mmoe[model.embed_dim]")


def _fake_runs(root, per_variant, tasks=("click", "order"), task_types=None, flags=None):
    """Writes final_metrics.json (+ schema.json) for variant → seed → test metrics."""
    for name, per_seed in per_variant.items():
        for seed, test in per_seed.items():
            d = root / name / f"seed{seed}"
            d.mkdir(parents=True)
            schema = {"tasks": list(tasks)}
            if task_types:
                schema["task_types"] = list(task_types)
            (d / "schema.json").write_text(json.dumps(schema))
            saved = {"test": test, "val": test, "flags": (flags or {}).get((name, seed), {})}
            (d / "final_metrics.json").write_text(json.dumps(saved))


def test_a_flagged_run_is_counted_and_left_out_of_every_figure(tmp_path):
    """A dead output (the loop's flags, or an AUC of exactly 0.5 in a run written before flags
    existed) is never averaged in: mean, spread and paired test use the other seeds."""
    good = {"click/auc": 0.78, "order/auc": 0.80, "loss": 0.4}
    runs = {
        "mmoe": {s: dict(good, **{"click/auc": 0.78 + 0.01 * s}) for s in range(6)},
        "shared_bottom": {s: dict(good, **{"click/auc": 0.77 + 0.01 * s}) for s in range(6)},
    }
    runs["shared_bottom"][2]["order/auc"] = 0.5  # an old run, no flags: caught by the AUC
    runs["mmoe"][4]["order/auc"] = 0.61  # flagged by the loop (constant predictions)
    flags = {("mmoe", 4): {"test": {"order": ["constant predictions (std of the logit 0)"]}}}
    _fake_runs(tmp_path, runs, flags=flags)
    results = ablate.collect(str(tmp_path), list(runs), range(6))
    found = ablate.run_flags(str(tmp_path), results)
    assert found == {
        "mmoe": {4: ["test order: constant predictions (std of the logit 0)"]},
        "shared_bottom": {2: ["test order: AUC exactly 0.5"]},
    }
    header, rows = ablate.table(results, "shared_bottom", flags=found)
    mmoe = dict(zip(header, rows[0]))
    assert mmoe["seeds"] == "5" and mmoe["flagged"] == "1 (seed 4)"
    assert mmoe["order AUC"] == "0.8000 ± 0.0000"  # 0.61 is not in it
    clicks = [0.78 + 0.01 * s for s in (0, 1, 2, 3, 5)]
    assert mmoe["click AUC"] == f"{np.mean(clicks):.4f} ± {np.std(clicks, ddof=1):.4f}"
    # paired over the seeds both kept (0, 1, 3, 5): +0.01 on each of 4 → p = 2/16
    assert mmoe["p click"] == "0.125"
    ablate.write_tables(str(tmp_path), header, rows, "cmd", found)
    md = open(tmp_path / "results.md").read()
    assert "`mmoe` seed 4: test order: constant predictions" in md


def test_regression_tasks_get_mse_columns_and_a_per_value_baseline(tmp_path):
    """Regression runs show MSE (lower is better) and R²; a swept variant is compared with the
    baseline at the same sweep value; the pivot puts the sweep values in columns."""
    runs = {}
    for corr, sb_mse in (("1.0", 0.30), ("0.0", 0.50)):
        runs[f"shared_bottom[correlation={corr}]"] = {
            s: {"y1/mse": sb_mse + 0.01 * s, "y1/r2": 0.9, "loss": 1.0} for s in range(6)
        }
        runs[f"mmoe[correlation={corr}]"] = {
            s: {"y1/mse": 0.30 + 0.01 * s, "y1/r2": 0.9, "loss": 1.0} for s in range(6)
        }
    _fake_runs(tmp_path, runs, tasks=("y1",), task_types=("regression",))
    results = ablate.collect(str(tmp_path), list(runs), range(6))
    tasks, types = ablate.run_tasks(str(tmp_path), results)
    assert types == ("regression",)
    header, rows = ablate.table(results, "shared_bottom", tasks, types)
    assert header[3:6] == ["y1 MSE", "y1 R2", "loss"] and "y1 MSE vs base" in header
    by = {r[0]: dict(zip(header, r)) for r in rows}
    assert by["mmoe[correlation=1.0]"]["y1 MSE vs base"] == "+0.00%"
    assert by["mmoe[correlation=0.0]"]["y1 MSE vs base"] == f"{100 * (0.325 - 0.525) / 0.525:+.2f}%"
    assert by["mmoe[correlation=0.0]"]["p y1"] == "0.031 *"  # 6 of 6 better: 2/64
    assert by["shared_bottom[correlation=0.0]"]["y1 MSE vs base"] == "baseline"
    configs = [("shared_bottom", []), ("mmoe", [])]
    layout = ablate.pivot_layout(configs, [("data.relatedness.correlation", ["1.0", "0.0"])])
    assert layout[1] == ("shared_bottom", "correlation=0.0", "shared_bottom[correlation=0.0]")
    p_header, p_rows = ablate.pivot(results, layout, "shared_bottom", "y1", "regression")
    assert p_header == ["y1 MSE", "correlation=1.0", "correlation=0.0"]
    assert p_rows[1][2].startswith("0.3250 ± ") and "p 0.031 *" in p_rows[1][2]


def test_config_arguments_per_variant_and_for_every_run(tmp_path, monkeypatch):
    """``name:arg`` gives one config its own arguments (``mmoe:paper``), ``--config-args`` gives
    every run some; each reaches the run's ``--config``, and a variant with arguments is compared
    with the baseline under the same arguments."""
    configs = ablate.parse_configs("mmoe,mmoe:paper,coarse_attention:paper[model.x=1]")
    assert configs == [("mmoe", []), ("mmoe:paper", []), ("coarse_attention:paper", ["model.x=1"])]
    assert [v for v, _, _ in ablate.variants(configs, [])] == [
        "mmoe", "mmoe:paper", "coarse_attention:paper[x=1]"
    ]  # fmt: skip
    assert ablate.config_spec("configs", "mmoe:paper", 2, True) == (
        "configs/mmoe.py:runlocal,seed=2,paper"
    )
    assert ablate.config_spec("configs", "ple", 1, False, config_args="paper") == (
        "configs/ple.py:seed=1,paper"
    )
    assert ablate.config_spec(
        "configs", "sequence_mmoe", 0, False, "phenomena", "phenomenon=sequence", "paper"
    ) == ("configs/phenomena.py:model=sequence_mmoe,seed=0,paper,phenomenon=sequence")
    results = dict.fromkeys(["mmoe", "mmoe:paper", "coarse_attention", "coarse_attention:paper"])
    assert ablate.baseline_of("coarse_attention:paper", "mmoe", results) == "mmoe:paper"
    assert ablate.baseline_of("coarse_attention:paper[x=1]", "mmoe", results) == "mmoe:paper"
    assert ablate.baseline_of("coarse_attention", "mmoe", results) == "mmoe"
    # the baseline under other arguments is compared with the plain baseline: the protocol's effect
    assert ablate.baseline_of("mmoe:paper", "mmoe", results) == "mmoe"
    # An option of the baseline config itself is compared with the plain config, not with itself;
    # a swept baseline (no plain run) still is its own baseline at each value.
    results = dict.fromkeys(["coarse_attention", "coarse_attention[attention_gate_norm=none]"])
    name = "coarse_attention[attention_gate_norm=none]"
    assert ablate.baseline_of(name, "coarse_attention", results) == "coarse_attention"
    results = dict.fromkeys(["mmoe[corr=0.5]", "ple[corr=0.5]"])
    assert ablate.baseline_of("mmoe[corr=0.5]", "mmoe", results) == "mmoe[corr=0.5]"

    # The runner: every run's --config, read back through its config file.
    commands = []

    def fake_run(cmd, stdout, stderr, env):
        commands.append(cmd)
        workdir = cmd[cmd.index("--workdir") + 1]
        metrics = {"click/auc": 0.7, "order/auc": 0.8, "loss": 0.4}
        with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
            json.dump({"test": metrics, "val": metrics}, f)
        return ablate.subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(ablate.subprocess, "run", fake_run)
    monkeypatch.chdir(ROOT)
    ablate.main(["--configs", "mmoe,esmm:paper", "--seeds", "1", "--workdir", str(tmp_path / "a")])
    ablate.main(
        ["--configs", "mmoe", "--seeds", "1", "--workdir", str(tmp_path / "b")]
        + ["--config-args", "paper"]
    )
    specs = [cmd[cmd.index("--config") + 1] for cmd in commands]
    assert sorted(specs) == [
        "configs/esmm.py:seed=0,paper", "configs/mmoe.py:seed=0", "configs/mmoe.py:seed=0,paper"
    ]  # fmt: skip
    for spec in specs:
        path, _, arg = spec.partition(":")
        c = importlib.import_module("configs." + os.path.basename(path)[:-3]).get_config(arg)
        assert c.num_epochs == (5 if "paper" in arg else 1)
    assert (tmp_path / "a" / "esmm:paper" / "seed0" / "final_metrics.json").exists()
    with pytest.raises(SystemExit, match="no config file"):
        ablate.main(["--configs", "nosuch:paper", "--workdir", str(tmp_path / "c")])


def test_tasks_come_from_the_metrics_when_no_schema_was_kept(tmp_path):
    """Committed results keep only final_metrics.json: the census runs' tasks are read from
    their metric keys, not assumed to be click/order (which would flag every run as NaN)."""
    test = {"income/auc": 0.9, "never_married/auc": 0.99, "loss": 0.3, "gates/mean": [0.5]}
    _fake_runs(tmp_path, {"mmoe": {0: test, 1: test}})
    for seed in (0, 1):
        os.remove(tmp_path / "mmoe" / f"seed{seed}" / "schema.json")
    results = ablate.collect(str(tmp_path), ["mmoe"], [0, 1])
    tasks, types = ablate.run_tasks(str(tmp_path), results)
    assert tasks == ("income", "never_married") and types == ("binary", "binary")
    assert ablate.run_flags(str(tmp_path), results, tasks, types) == {}


def test_tasks_of_runs_kept_without_a_schema(tmp_path):
    """The committed results keep only final_metrics.json: the tasks come from the metrics (the
    census tasks, not click/order; regression by its MSE; the synthetic cvr/auc is no task)."""
    census = os.path.join(ROOT, "results", "census_5seed")
    results = ablate.collect(census, ["mmoe"], [0])
    assert ablate.run_tasks(census, results) == (("income", "never_married"), ("binary",) * 2)
    synthetic = os.path.join(ROOT, "results", "synthetic_5seed")
    results = ablate.collect(synthetic, ["mmoe"], [0])
    assert "cvr/auc" in results["mmoe"][0]
    assert ablate.run_tasks(synthetic, results) == (("click", "order"), ("binary",) * 2)
    d = tmp_path / "mmoe" / "seed0"
    d.mkdir(parents=True)
    test = {"y1/mse": 0.3, "y1/oracle_mse": 0.01, "y2/mse": 0.4, "loss": 0.7}
    (d / "final_metrics.json").write_text(json.dumps({"test": test, "val": test}))
    results = ablate.collect(str(tmp_path), ["mmoe"], [0])
    assert ablate.run_tasks(str(tmp_path), results) == (("y1", "y2"), ("regression",) * 2)


def test_the_runner_compares_a_sweep_with_the_baseline_at_the_same_value(tmp_path):
    """``mmoe`` itself never runs under a sweep, only ``mmoe[correlation=...]``: the long table
    still compares every variant with the baseline at its own sweep value."""
    runs = {
        f"{m}[correlation={c}]": {s: {"y1/mse": mse + 0.01 * s, "loss": 1.0} for s in range(2)}
        for m, c, mse in [("mmoe", "0.0", 0.5), ("mmoe", "1.0", 0.3), ("ple", "0.0", 0.4)]
        + [("ple", "1.0", 0.3)]
    }
    _fake_runs(tmp_path, runs, tasks=("y1",), task_types=("regression",))
    header, rows = ablate.main(
        ["--configs-dir", os.path.join(ROOT, "configs"), "--data-config", "relatedness"]
        + ["--configs", "mmoe,ple", "--seeds", "2", "--workdir", str(tmp_path)]
        + ["--sweep", "data.relatedness.correlation=0.0,1.0"]
    )  # every run is there: nothing is trained
    by = {r[0]: dict(zip(header, r)) for r in rows}
    assert by["mmoe[correlation=1.0]"]["y1 MSE vs base"] == "baseline"
    assert by["ple[correlation=1.0]"]["y1 MSE vs base"] == "+0.00%"


def test_the_command_exits_0_and_a_second_view_keeps_the_first(tmp_path):
    """``python -m mtl_jax.ablate`` returns status 0 (main returns the table for callers), and
    ``--name`` writes another view of finished runs beside results.md."""
    from mtl_jax import cli

    runs = {n: {s: {"click/auc": 0.7 + 0.01 * s, "order/auc": 0.8} for s in range(2)}
            for n in ("mmoe", "omoe")}  # fmt: skip
    _fake_runs(tmp_path, runs)
    argv = ["--configs", "mmoe,omoe", "--seeds", "2", "--workdir", str(tmp_path)]
    argv += ["--configs-dir", os.path.join(ROOT, "configs")]
    assert cli.run(ablate._command, argv) == 0
    first = open(tmp_path / "results.md").read()
    assert cli.run(ablate._command, [*argv, "--baseline", "omoe", "--name", "vs_omoe"]) == 0
    assert open(tmp_path / "results.md").read() == first
    assert "| omoe | 2 | 0 |" in open(tmp_path / "vs_omoe.md").read()
