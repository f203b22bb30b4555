"""bench/peer_torch_rechub.py without torch: data export, our side, result logic, missing peer."""

import argparse
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import peer_torch_rechub as peer  # noqa: E402


def _args(**kw):
    base = dict(train_rows=2048, test_rows=1000, vocab_scale=0.01, set=[])
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.fixture(scope="module")
def tiny():
    config = peer.bench_config(_args())
    config.model.update(embed_dim=8, num_experts=2, expert_hidden=(16,), tower_hidden=(8,))
    config.batch_size = 256
    config.eval_batch_size = 512
    from mtl_jax.data import loading

    schema, splits = loading.load(config.data)
    return config, schema, splits


def test_script_imports_neither_jax_nor_mtl_jax():
    # The torch worker runs the same file with the peer venv's python, which has no jax.
    code = (
        "import sys; sys.path.insert(0, 'bench'); import peer_torch_rechub; "
        "bad = [m for m in ('jax', 'mtl_jax', 'configs', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_export_round_trip(tiny, tmp_path):
    config, schema, splits = tiny
    path = str(tmp_path / "data.npz")
    peer.export_data(schema, splits, path, peer.peer_config(config))
    meta, arrays = peer.load_export(path)
    for split in ("train", "test"):
        for key in ("cat", "dense", "labels"):
            got = arrays[f"{split}_{key}"]
            np.testing.assert_array_equal(got, splits[split][key])
            assert got.dtype == (np.int32 if key == "cat" else np.float32)
    assert arrays["train_cat"].shape == (2048, 23) and arrays["test_dense"].shape == (1000, 8)
    assert [f["name"] for f in meta["fields"]] == [f.name for f in schema.categorical]
    assert [f["vocab_size"] for f in meta["fields"]] == [f.vocab_size for f in schema.categorical]
    assert [f["table"] for f in meta["fields"]] == [f.table_name for f in schema.categorical]
    assert meta["dense"] == list(schema.dense) and meta["tasks"] == ["click", "order"]
    assert meta["model"] == {
        "num_experts": 2,
        "expert_hidden": [16],
        "tower_hidden": [8],
        "expert_activation": "relu",
        "tower_activation": "dice",
        "embed_dim": 8,
        "dropout": 0.0,
        "batch_size": 256,
        "learning_rate": 1e-3,
        "weight_decay": 0.0,
    }
    # Every id fits its table, so the peer's nn.Embedding cannot index out of range.
    vocab = np.array([f["vocab_size"] for f in meta["fields"]])
    assert (arrays["train_cat"] >= 0).all() and (arrays["train_cat"] < vocab).all()


def test_run_ours_tiny(tiny):
    config, schema, splits = tiny
    r = peer.run_ours(config, schema, splits, seed=0, warmup=2)
    assert r["steps"] == 2048 // 256
    assert r["timed_examples"] == (8 - 2) * 256
    assert r["examples_per_sec"] > 0 and np.isfinite(r["last_loss"])
    r = peer.add_aucs(r, splits["test"]["labels"])
    assert "probs" not in r
    assert 0.0 <= r["click_auc"] <= 1.0 and 0.0 <= r["order_auc"] <= 1.0
    with pytest.raises(SystemExit, match="warmup"):
        peer.run_ours(config, schema, splits, seed=0, warmup=8)


def test_add_aucs_known_answer():
    labels = np.array([[1, 0], [0, 0], [1, 1], [0, 0]], np.float32)
    probs = np.array([[0.9, 0.1], [0.2, 0.3], [0.4, 0.8], [0.6, 0.2]], np.float32)
    r = peer.add_aucs({"side": "peer", "probs": probs}, labels)
    assert r["click_auc"] == pytest.approx(0.75) and r["order_auc"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="non-finite"):
        peer.add_aucs({"side": "peer", "probs": np.full_like(probs, np.nan)}, labels)
    with pytest.raises(ValueError, match="labels"):
        peer.add_aucs({"side": "peer", "probs": probs[:3]}, labels)


def _run(side, eps, click, order):
    return {"side": side, "examples_per_sec": eps, "click_auc": click, "order_auc": order}


def test_summarise_medians_ratio_and_verdict():
    runs = [
        _run("ours", 9000.0, 0.770, 0.750),
        _run("peer", 2000.0, 0.771, 0.745),
        _run("ours", 12000.0, 0.772, 0.752),
        _run("peer", 4000.0, 0.773, 0.747),
        _run("ours", 10000.0, 0.774, 0.754),
        _run("peer", 3000.0, 0.772, 0.746),
    ]
    s = peer.summarise(runs)
    assert s["ours"]["examples_per_sec"] == 10000.0 and s["peer"]["examples_per_sec"] == 3000.0
    assert s["ratio"] == pytest.approx(10000 / 3000)
    assert s["click_auc_diff"] == pytest.approx(0.772 - 0.772)
    assert s["order_auc_diff"] == pytest.approx(0.752 - 0.746)
    assert s["done"]
    assert "met" in peer.format_summary(s) and "NOT met" not in peer.format_summary(s)

    slow = peer.summarise([_run("ours", 2900.0, 0.8, 0.8), _run("peer", 1000.0, 0.8, 0.8)])
    assert not slow["done"] and "NOT met" in peer.format_summary(slow)
    worse = peer.summarise([_run("ours", 5000.0, 0.797, 0.8), _run("peer", 1000.0, 0.8, 0.8)])
    assert worse["click_auc_diff"] == pytest.approx(-0.003) and not worse["done"]
    within = peer.summarise([_run("ours", 5000.0, 0.8, 0.799), _run("peer", 1000.0, 0.8, 0.8)])
    assert within["done"]
    with pytest.raises(ValueError, match="peer"):
        peer.summarise([_run("ours", 1.0, 0.5, 0.5)])


def test_timed_loader_skips_warmup_batches():
    batches = [({"a": None}, np.zeros(n)) for n in (10, 10, 10, 10, 7)]
    timed = peer._TimedLoader(batches, warmup=2)
    assert len(timed) == 5
    assert [len(y) for _, y in timed] == [10, 10, 10, 10, 7]
    assert timed.batches == 5 and timed.examples == 47 and timed.warmup_examples == 20
    assert timed.t_start is not None
    too_few = peer._TimedLoader(batches, warmup=5)
    list(too_few)
    assert too_few.t_start is None


def test_missing_peer_venv_names_the_install_command(tmp_path, capsys):
    with pytest.raises(peer.PeerMissingError, match="bench/peer_requirements.txt"):
        peer.check_peer_python(str(tmp_path / "no-venv" / "bin" / "python"))
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'ModuleNotFoundError: torch' >&2\nexit 1\n")
    broken.chmod(0o755)
    with pytest.raises(peer.PeerMissingError, match="cannot import torch"):
        peer.check_peer_python(str(broken))
    with pytest.raises(SystemExit, match=r"python -m venv bench/\.peer-venv"):
        peer.main(["--peer-python", str(tmp_path / "missing")])
