"""Ablation runner: table columns, mean/std against the per-run files, resume, permutation test."""

import csv
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
    assert header[:7] == ["model", "seeds", "click AUC", "order AUC", "loss", "CLICK@2", "ORDER@2"]
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
    tasks = ablate.run_tasks(str(tmp_path), results)
    assert tasks == ("income", "never_married")
    header, rows = ablate.table(results, "mmoe", tasks)
    assert header == [
        "model", "seeds", "income AUC", "never_married AUC", "loss", "INCOME@2",
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
