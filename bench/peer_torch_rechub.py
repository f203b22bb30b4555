"""Training throughput and test AUC side by side: mtl_jax's MMoE vs torch-rechub's MMOE.

Set up the peer once, in its own virtualenv (a CPU build of torch and torch-rechub from PyPI;
nothing of it goes into the project's environment):

    python -m venv bench/.peer-venv
    bench/.peer-venv/bin/pip install -r bench/peer_requirements.txt

Then, from the project's environment:

    python bench/peer_torch_rechub.py [--train-rows 300000] [--test-rows 100000]
        [--vocab-scale 1.0] [--rounds 2] [--warmup 20] [--peer-python bench/.peer-venv/bin/python]
        [--peer-loader rechub|batched] [--set key=value ...] [--json out.json]

What it does. The data are generated once with the library's synthetic Ali-CCP generator
(``configs/common.get_base_config(model="mmoe")``: 23 categorical fields, 8 dense features, tasks
click and order, where order is the impression-level label click · purchase) and exported to an
``.npz`` in a temporary folder. Then the two sides alternate, ours, peer, ours, peer (``--rounds``
of each; round r uses seed r for both), each training one epoch over the same train rows with the
paper's config (MMoE, 8 experts of 256-128 ReLU, towers of 64 with Dice, embedding 32,
batch 1000, Adam lr 1e-3, no dropout, no weight decay), then predicting the test rows.

* Ours runs in this process on the library's training path: the Grain pipeline
  (``pipeline.train_batches``), ``sharding.to_global``, the jitted, donated
  ``loop.jit_train_step``, and for the test rows ``eval_report.predict_split`` with
  ``loop.jit_eval_step``. The config is the library's default for ``mmoe`` (so
  ``loss.cascade=masked``, ``loss.loss_weights=(1, 0.02)``, ``optim.embedding_update=lazy_adam``);
  ``--set`` overrides any key, e.g. ``--set loss.cascade=none``.
* The peer runs in a subprocess of the peer venv's python (``--worker torch``, which imports
  neither jax nor mtl_jax) exactly as torch-rechub's own Ali-CCP example does: ``SparseFeature``
  (embed_dim 32, vocabulary sizes from our schema) and ``DenseFeature`` columns,
  ``torch_rechub.models.multi_task.MMOE``, ``torch_rechub.utils.data.DataGenerator`` (its
  ``TorchDataset`` + a shuffling ``DataLoader``, per-example collation) and
  ``torch_rechub.trainers.MTLTrainer.train_one_epoch`` with Adam(lr 1e-3, weight_decay 0);
  test predictions with ``MTLTrainer.predict``. ``--peer-loader batched`` instead feeds
  MTLTrainer whole batches gathered by index (same model, same trainer) to show how much of the
  peer's time is its per-example data loader; the default is torch-rechub's own loader.
  torch uses ``os.cpu_count()`` threads (``--threads``).

Timing: examples/s over one epoch, excluding the first ``--warmup`` batches (compilation on our
side, allocator warm-up on the peer's); the clock stops when the last update has finished. AUCs
of both sides are computed here with ``mtl_jax.metrics.auc`` over all test impressions: click AUC
on the click label and order AUC on the impression-level order label (CTCVR-style; our
``masked`` cascade scores it with p_click · p_cvr, the peer's order head predicts it directly).

Known differences that come with torch-rechub (printed with the results): its ``MLP`` puts a
``BatchNorm1d`` after every ``Linear`` (experts, gates and towers); its ``Dice`` normalises each
row over the units (ours: DIN's batch statistics per unit); MTLTrainer's loss is
(L_click + L_order) / 2 over all impressions (ours: L_click + 0.02 · L_cvr on clicked rows under
the masked cascade), and its Adam is dense over every embedding row (nn.Embedding without sparse
gradients) where ours updates only the rows a batch touches (lazy Adam); its embeddings start
from N(0, 1e-4).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALL_COMMAND = (
    "python -m venv bench/.peer-venv && "
    "bench/.peer-venv/bin/pip install -r bench/peer_requirements.txt"
)
DEFAULT_PEER_PYTHON = os.path.join("bench", ".peer-venv", "bin", "python")
RESULT_PREFIX = "PEER_RESULT "
# The issue's done-when: ours ≥ 3× the peer's examples/s and each test AUC ≥ the peer's − 0.002.
TARGET_RATIO = 3.0
AUC_TOLERANCE = 0.002


class PeerMissingError(RuntimeError):
    pass


# ---- data export (numpy only: shared by both sides) -------------------------------------------


def peer_config(config) -> dict:
    """The model / optimiser settings the torch worker needs, from our config."""
    m, o = config.model, config.optim
    return {
        "num_experts": int(m.num_experts),
        "expert_hidden": [int(x) for x in m.expert_hidden],
        "tower_hidden": [int(x) for x in m.tower_hidden],
        "expert_activation": str(m.expert_activation),
        "tower_activation": str(m.tower_activation),
        "embed_dim": int(m.embed_dim),
        "dropout": float(m.dropout),
        "batch_size": int(config.batch_size),
        "learning_rate": float(o.learning_rate),
        "weight_decay": float(o.weight_decay),
    }


def export_data(schema, splits: dict, path: str, model_config: dict) -> None:
    """Writes the train and test rows the peer trains and evaluates on, and what it needs to know.

    Args:
      schema: the ``Schema`` of ``splits``.
      splits: ``{"train": columns, "test": columns}`` as ``loading.load`` returns them.
      path: the ``.npz`` to write.
      model_config: ``peer_config(config)``.
    """
    meta = {
        "fields": [
            {"name": f.name, "vocab_size": int(f.vocab_size), "table": f.table_name}
            for f in schema.categorical
        ],
        "dense": list(schema.dense),
        "tasks": list(schema.tasks),
        "model": model_config,
    }
    arrays = {"meta": np.asarray(json.dumps(meta))}
    for split in ("train", "test"):
        cols = splits[split]
        arrays[f"{split}_cat"] = np.ascontiguousarray(cols["cat"], dtype=np.int32)
        arrays[f"{split}_dense"] = np.ascontiguousarray(cols["dense"], dtype=np.float32)
        arrays[f"{split}_labels"] = np.ascontiguousarray(cols["labels"], dtype=np.float32)
    np.savez(path, **arrays)


def load_export(path: str) -> tuple[dict, dict]:
    """``export_data``'s file → (meta, {"train_cat": ..., ...})."""
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        arrays = {k: z[k] for k in z.files if k != "meta"}
    return meta, arrays


# ---- results (no jax, no torch) ----------------------------------------------------------------


def summarise(runs: list[dict]) -> dict:
    """Medians of examples/s per side, their ratio, and mean test AUCs and their differences.

    Args:
      runs: one dict per run with ``side`` ("ours" or "peer"), ``examples_per_sec``,
        ``click_auc`` and ``order_auc``.
    """
    out: dict = {}
    for side in ("ours", "peer"):
        mine = [r for r in runs if r["side"] == side]
        if not mine:
            raise ValueError(f"no {side!r} runs to summarise")
        out[side] = {
            "runs": len(mine),
            "examples_per_sec": statistics.median(r["examples_per_sec"] for r in mine),
            "click_auc": statistics.fmean(r["click_auc"] for r in mine),
            "order_auc": statistics.fmean(r["order_auc"] for r in mine),
        }
    out["ratio"] = out["ours"]["examples_per_sec"] / out["peer"]["examples_per_sec"]
    out["click_auc_diff"] = out["ours"]["click_auc"] - out["peer"]["click_auc"]
    out["order_auc_diff"] = out["ours"]["order_auc"] - out["peer"]["order_auc"]
    out["done"] = bool(
        out["ratio"] >= TARGET_RATIO
        and out["click_auc_diff"] >= -AUC_TOLERANCE
        and out["order_auc_diff"] >= -AUC_TOLERANCE
    )
    return out


def format_run(r: dict) -> str:
    return (
        f"round {r['round']}  {r['side']:4s}  {r['examples_per_sec']:>10,.0f} examples/s  "
        f"({r['timed_examples']:,} rows in {r['timed_seconds']:.1f} s)  "
        f"click AUC {r['click_auc']:.4f}  order AUC {r['order_auc']:.4f}"
    )


def format_summary(s: dict) -> str:
    o, p = s["ours"], s["peer"]
    verdict = "met" if s["done"] else "NOT met"
    return "\n".join(
        [
            f"median examples/s: ours {o['examples_per_sec']:,.0f}  "
            f"peer {p['examples_per_sec']:,.0f}  ratio ours/peer {s['ratio']:.2f}x",
            f"mean test AUC: click ours {o['click_auc']:.4f} peer {p['click_auc']:.4f} "
            f"(diff {s['click_auc_diff']:+.4f}); order ours {o['order_auc']:.4f} "
            f"peer {p['order_auc']:.4f} (diff {s['order_auc_diff']:+.4f})",
            f"done-when (ratio >= {TARGET_RATIO:g}x and each AUC >= peer - {AUC_TOLERANCE}): "
            f"{verdict}",
        ]
    )


# ---- peer side (torch; never imports jax) --------------------------------------------------------


def check_peer_python(peer_python: str) -> None:
    """Raises ``PeerMissingError`` naming the install command unless the peer venv works."""
    hint = f"install the peer virtualenv from the repository root with:\n    {INSTALL_COMMAND}"
    if not os.path.exists(peer_python):
        raise PeerMissingError(f"peer python {peer_python!r} does not exist; {hint}")
    probe = subprocess.run(
        [peer_python, "-c", "import torch, torch_rechub"],
        capture_output=True,
        text=True,
        env=_peer_env(),
    )
    if probe.returncode != 0:
        tail = probe.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise PeerMissingError(
            f"{peer_python} cannot import torch and torch_rechub ({tail[0]}); {hint}"
        )


def _peer_env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # nothing of the project's environment leaks into the peer's
    return env


def torch_worker(args) -> None:
    """Trains torch-rechub's MMOE for one epoch on the export; prints one result line."""
    import torch
    import torch_rechub
    from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler
    from torch_rechub.basic.activation import activation_layer
    from torch_rechub.basic.features import DenseFeature, SparseFeature
    from torch_rechub.models.multi_task import MMOE
    from torch_rechub.trainers import MTLTrainer
    from torch_rechub.utils.data import DataGenerator, PredictDataset

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    meta, a = load_export(args.data)
    mc = meta["model"]
    B = mc["batch_size"]

    # Fields sharing one of our tables share one torch-rechub embedding (shared_with).
    first_of_table: dict[str, str] = {}
    features = []
    for f in meta["fields"]:
        owner = first_of_table.setdefault(f["table"], f["name"])
        features.append(
            SparseFeature(
                f["name"],
                f["vocab_size"],
                embed_dim=mc["embed_dim"],
                shared_with=None if owner == f["name"] else owner,
            )
        )
    features += [DenseFeature(d) for d in meta["dense"]]

    tower_activation = mc["tower_activation"]
    try:
        activation_layer(tower_activation)
        activation_note = f"{tower_activation} (torch-rechub's)"
    except Exception:  # activation_layer fails on names it does not know
        activation_note = f"relu: torch-rechub's MLP has no {tower_activation!r}"
        tower_activation = "relu"

    def columns(split):
        x = {f["name"]: a[f"{split}_cat"][:, i] for i, f in enumerate(meta["fields"])}
        x.update({d: a[f"{split}_dense"][:, j] for j, d in enumerate(meta["dense"])})
        return x, a[f"{split}_labels"]

    x_train, y_train = columns("train")
    x_test, y_test = columns("test")
    task_types = ["classification"] * len(meta["tasks"])
    model = MMOE(
        features,
        task_types,
        mc["num_experts"],
        expert_params={
            "dims": mc["expert_hidden"],
            "activation": mc["expert_activation"],
            "dropout": mc["dropout"],
        },
        tower_params_list=[
            {"dims": mc["tower_hidden"], "activation": tower_activation, "dropout": mc["dropout"]}
            for _ in task_types
        ],
    )
    if args.peer_loader == "rechub":
        train_loader, _, _ = DataGenerator(x_train, y_train).generate_dataloader(
            x_val=x_test, y_val=y_test, x_test=x_test, y_test=y_test, batch_size=B
        )
    else:

        class WholeBatches(Dataset):
            def __len__(self):
                return len(y_train)

            def __getitem__(self, rows):
                rows = np.sort(np.asarray(rows))
                x = {k: torch.from_numpy(v[rows]) for k, v in x_train.items()}
                return x, torch.from_numpy(y_train[rows])

        ds = WholeBatches()
        train_loader = DataLoader(
            ds, sampler=BatchSampler(RandomSampler(ds), B, drop_last=False), batch_size=None
        )

    with tempfile.TemporaryDirectory() as model_dir:
        trainer = MTLTrainer(
            model,
            task_types=task_types,
            optimizer_params={"lr": mc["learning_rate"], "weight_decay": mc["weight_decay"]},
            n_epoch=1,
            device="cpu",
            model_path=model_dir,
        )
        timed = _TimedLoader(train_loader, args.warmup)
        t0 = time.perf_counter()
        losses = trainer.train_one_epoch(timed)
        t_end = time.perf_counter()
        test_loader = DataLoader(PredictDataset(x_test), batch_size=10 * B, shuffle=False)
        t_pred = time.perf_counter()
        probs = np.asarray(trainer.predict(trainer.model, test_loader), dtype=np.float32)
        t_pred = time.perf_counter() - t_pred
    if timed.t_start is None:
        raise SystemExit(f"only {timed.batches} batches; need more than --warmup={args.warmup}")
    np.save(args.out, probs)
    from sklearn.metrics import roc_auc_score  # torch-rechub's own metric (a dependency of it)

    result = {
        "side": "peer",
        "examples_per_sec": (timed.examples - timed.warmup_examples) / (t_end - timed.t_start),
        "timed_examples": timed.examples - timed.warmup_examples,
        "timed_seconds": t_end - timed.t_start,
        "train_seconds": t_end - t0,
        "predict_seconds": t_pred,
        "steps": timed.batches,
        "train_loss": [float(x) for x in losses],
        "sklearn_auc": [float(roc_auc_score(y_test[:, k], probs[:, k])) for k in range(2)],
        "params": int(sum(p.numel() for p in model.parameters())),
        "threads": torch.get_num_threads(),
        "tower_activation": activation_note,
        "loader": args.peer_loader,
        "versions": {"torch": torch.__version__, "torch_rechub": _version(torch_rechub)},
    }
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def _version(module) -> str:
    v = getattr(module, "__version__", None)
    if v:
        return v
    from importlib import metadata

    return metadata.version("torch-rechub")


class _TimedLoader:
    """Wraps a DataLoader; notes when the batch after the warm-up is asked for.

    MTLTrainer asks for batch i + 1 only after step i's update (and its ``loss.item()``) is
    done, so that moment is the end of the warm-up.
    """

    def __init__(self, loader, warmup: int):
        self.loader, self.warmup = loader, warmup
        self.t_start = None
        self.batches = self.examples = self.warmup_examples = 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            if self.batches == self.warmup:
                self.t_start = time.perf_counter()
                self.warmup_examples = self.examples
            self.batches += 1
            self.examples += len(y)
            yield x, y


def run_peer(peer_python: str, data_path: str, seed: int, args, workdir: str) -> dict:
    out = os.path.join(workdir, f"peer_probs_{seed}.npy")
    cmd = [
        peer_python,
        os.path.abspath(__file__),
        "--worker",
        "torch",
        "--data",
        data_path,
        "--out",
        out,
        "--seed",
        str(seed),
        "--threads",
        str(args.threads),
        "--warmup",
        str(args.warmup),
        "--peer-loader",
        args.peer_loader,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_peer_env())
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise RuntimeError(f"the torch worker failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1][len(RESULT_PREFIX) :])
    result["probs"] = np.load(out)
    return result


# ---- our side (jax) ---------------------------------------------------------------------------


def bench_config(args):
    sys.path.insert(0, ROOT)
    from configs import common

    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import throughput

    config = common.get_base_config(model="mmoe")
    config.data.synthetic.update(
        num_train=args.train_rows,
        num_val=1000,
        num_test=args.test_rows,
        vocab_scale=args.vocab_scale,
    )
    throughput.apply_overrides(config, args.set)
    return config


def run_ours(config, schema, splits, *, seed: int, warmup: int) -> dict:
    """One epoch of the library's training path over ``splits["train"]``, then test predictions."""
    import jax

    from mtl_jax import eval_report, loop, optim, sharding, touched_rows
    from mtl_jax.data import loading, pipeline
    from mtl_jax.state import count_params, create_train_state, init_model

    mesh = sharding.make_mesh(config.mesh)
    n_train = pipeline.num_rows(splits["train"])
    num_steps = pipeline.steps_per_epoch(n_train, config.batch_size)
    if num_steps <= warmup:
        raise SystemExit(f"only {num_steps} steps per epoch; need more than --warmup={warmup}")
    tx = optim.make_optimizer(config, num_steps)
    graphdef, params, model_state = init_model(schema, config.model, seed, config.loss.weighting)
    n_params = count_params(params)
    state = create_train_state(params, model_state, tx)
    state_sh = sharding.state_sharding(state, mesh, sharding.sharding_rules(config.mesh))
    state = jax.device_put(state, state_sh)
    batch_sh = sharding.batch_sharding(mesh)
    train_step = loop.jit_train_step(graphdef, tx, config, state_sh, batch_sh)
    train_iter = iter(
        pipeline.train_batches(
            loading.model_inputs(splits["train"]),
            batch_size=config.batch_size,
            num_steps=num_steps,
            seed=seed,
            prefetch=config.prefetch,
            transform=touched_rows.host_transform(graphdef, params, model_state, sparse=tx.sparse),
        )
    )
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import throughput

    first = sharding.to_global(next(train_iter), mesh)
    flops = throughput.step_flops(train_step, state, first)
    t0 = t_start = time.perf_counter()
    step_metrics = None
    try:
        for i in range(num_steps):
            batch = first if i == 0 else sharding.to_global(next(train_iter), mesh)
            if i == warmup:
                if step_metrics is not None:
                    jax.block_until_ready(step_metrics["loss"])
                t_start = time.perf_counter()
            state, step_metrics = train_step(state, batch)
        loss = float(jax.device_get(step_metrics["loss"]))  # waits for the last update
        t_end = time.perf_counter()
    finally:
        train_iter.close()
    eval_step = loop.jit_eval_step(
        graphdef, config, state_sh.params, state_sh.model_state, batch_sh
    )
    t_pred = time.perf_counter()
    pred = eval_report.predict_split(
        eval_step,
        state.params,
        state.model_state,
        splits["test"],
        batch_size=config.eval_batch_size,
        mesh=mesh,
    )
    t_pred = time.perf_counter() - t_pred
    timed = (num_steps - warmup) * config.batch_size
    return {
        "side": "ours",
        "examples_per_sec": timed / (t_end - t_start),
        "timed_examples": timed,
        "timed_seconds": t_end - t_start,
        "train_seconds": t_end - t0,
        "predict_seconds": t_pred,
        "steps": num_steps,
        "last_loss": loss,
        "params": n_params,
        "flops_per_example": flops / config.batch_size,
        "probs": pred["probs"],
    }


def add_aucs(result: dict, labels: np.ndarray) -> dict:
    """Click and order AUC over all test impressions, with the library's exact AUC."""
    from mtl_jax import metrics

    probs = result.pop("probs")
    if probs.shape != labels.shape:
        raise ValueError(f"{result['side']}: predictions {probs.shape} vs labels {labels.shape}")
    if not np.all(np.isfinite(probs)):
        raise ValueError(f"{result['side']}: non-finite test predictions")
    result["click_auc"] = metrics.auc(labels[:, 0], probs[:, 0])
    result["order_auc"] = metrics.auc(labels[:, 1], probs[:, 1])
    return result


def describe(config, schema, args, peer: dict | None) -> list[str]:
    m = config.model
    emb_rows = sum(schema.tables().values())
    lines = [
        f"data: synthetic Ali-CCP, {args.train_rows:,} train / {args.test_rows:,} test rows, "
        f"vocab_scale {args.vocab_scale} ({emb_rows:,} embedding rows), "
        f"{schema.num_fields} categorical + {schema.num_dense} dense features; 1 epoch each run",
        f"config: MMoE {m.num_experts} experts {'-'.join(map(str, m.expert_hidden))} "
        f"({m.expert_activation}), towers {'-'.join(map(str, m.tower_hidden))} "
        f"({m.tower_activation}), embed {m.embed_dim}, batch {config.batch_size}, "
        f"Adam lr {config.optim.learning_rate:g}, dropout {m.dropout:g}, "
        f"warm-up batches not timed: {args.warmup}",
        f"ours: loss.cascade={config.loss.cascade} loss_weights={tuple(config.loss.loss_weights)} "
        f"embedding_update={config.optim.embedding_update} compute_dtype={config.compute_dtype}",
    ]
    if peer is not None:
        v = peer["versions"]
        loader = {"rechub": "DataGenerator's DataLoader", "batched": "whole-batch DataLoader"}
        lines.append(
            f"peer: torch-rechub {v['torch_rechub']} on torch {v['torch']} ({peer['threads']} "
            f"threads), {loader[peer['loader']]} + MTLTrainer.train_one_epoch; "
            f"towers {peer['tower_activation']}; "
            "BatchNorm1d after every Linear (experts, gates, towers); loss (L_click + L_order)/2 "
            "on all impressions; dense Adam over all embedding rows"
        )
    return lines


def main_bench(args) -> None:
    peer_python = args.peer_python
    try:
        check_peer_python(peer_python)
    except PeerMissingError as e:
        raise SystemExit(f"error: {e}") from None

    config = bench_config(args)
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import throughput

    from mtl_jax.data import loading

    t = time.perf_counter()
    schema, splits = loading.load(config.data)
    print(f"data generated in {time.perf_counter() - t:.0f} s", flush=True)
    labels = splits["test"]["labels"]
    runs = []
    with tempfile.TemporaryDirectory(prefix="peer_bench_") as workdir:
        data_path = os.path.join(workdir, "aliccp_synthetic.npz")
        export_data(schema, splits, data_path, peer_config(config))
        print(f"machine: {throughput.machine()}", flush=True)
        peer_info = None
        for r in range(args.rounds):
            ours = run_ours(config, schema, splits, seed=r, warmup=args.warmup)
            runs.append(add_aucs({**ours, "round": r + 1}, labels))
            print(format_run(runs[-1]), flush=True)
            peer = run_peer(peer_python, data_path, r, args, workdir)
            runs.append(add_aucs({**peer, "round": r + 1}, labels))
            peer_info = peer
            print(format_run(runs[-1]), flush=True)
    summary = summarise(runs)
    print()
    print(f"machine: {throughput.machine()}")
    for line in describe(config, schema, args, peer_info):
        print(line)
    print(f"params: ours {runs[0]['params']:,}  peer {peer_info['params']:,}")
    for run in runs:
        print(format_run(run))
    print(format_summary(summary))
    ours_runs = [r for r in runs if r["side"] == "ours"]
    ours_eps = statistics.median(r["examples_per_sec"] for r in ours_runs)
    flops = ours_runs[0]["flops_per_example"]
    print(
        throughput.roofline_line(
            {"flops_per_example": flops, "gflops_per_sec": flops * ours_eps / 1e9},
            throughput.gemm_peak_gflops(),
        )
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": throughput.machine(),
                    "args": vars(args),
                    "runs": runs,
                    "summary": summary,
                },
                f,
                indent=2,
            )


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--train-rows", type=int, default=300_000)
    ap.add_argument("--test-rows", type=int, default=100_000)
    ap.add_argument("--vocab-scale", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=2, help="runs of each side, alternating")
    ap.add_argument("--warmup", type=int, default=20, help="first batches of each run not timed")
    ap.add_argument("--peer-python", default=DEFAULT_PEER_PYTHON)
    ap.add_argument(
        "--peer-loader",
        choices=("rechub", "batched"),
        default="rechub",
        help="rechub: torch-rechub's DataGenerator (per-example); batched: whole batches by index",
    )
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    ap.add_argument("--set", nargs="*", default=[], help="our config overrides key=value")
    ap.add_argument("--json", help="also write runs and summary to this JSON file")
    # Worker mode (run by the script itself with the peer venv's python).
    ap.add_argument("--worker", choices=("torch",), help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    return ap


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    if args.worker == "torch":
        torch_worker(args)
    else:
        main_bench(args)


if __name__ == "__main__":
    main()
