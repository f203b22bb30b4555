"""Fault injection: kill -9 at random moments and corrupt checkpoints; every rerun must finish
bit-identical to an uninterrupted run.

    python bench/faults.py [--kills 20] [--seed 0] [--workdir DIR]

1. A reference run of a tiny runlocal MMoE config (40 steps, a checkpoint every 5, a training
   row every step) in its own process, to completion.
2. ``--kills`` trials: a run is started and killed with SIGKILL either right after a random step
   (the moment its training row reaches ``metrics.jsonl``) or while a random checkpoint is being
   written (its ``<step>.orbax-checkpoint-tmp`` directory exists); then the same command is
   rerun to completion. A trial passes when the final state (params, optimizer state, model
   state, step) is bit-identical to the reference and ``metrics.jsonl`` holds the reference's
   rows (the same steps, splits and values, each once; times and throughput aside).
3. Three corruptions of the newest (final) checkpoint of a copy of the reference run: an array
   file deleted, an array file truncated to half, the data-iterator state deleted. The rerun must
   skip it, restore the previous checkpoint, retrain to the end bit-identically and move the
   corrupt one to ``checkpoints_unrestorable/``.

Prints one line per trial, the reference's parameter hash (sha256 over every parameter array,
in path order) and ``N/N bit-identical`` / ``N/N fell back``. The runs use one CPU device each
and share an XLA compilation cache, so a trial costs a few seconds after the first.
``tests/test_faults.py`` runs a short version (2 kills).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

NUM_STEPS = 40
CHECKPOINT_EVERY = 5
CONFIG = [
    "--config",
    "configs/mmoe.py:runlocal",
    f"--config.num_steps={NUM_STEPS}",
    f"--config.checkpoint_every_steps={CHECKPOINT_EVERY}",
    "--config.log_every_steps=1",
    "--config.eval_every_steps=10",
    "--config.max_to_keep=3",
    "--config.batch_size=64",
    "--config.eval_batch_size=500",
    "--config.data.synthetic.num_train=4000",
    "--config.data.synthetic.num_val=1000",
    "--config.data.synthetic.num_test=1000",
]
VOLATILE = ("time", "examples_per_sec")  # differ between any two runs


def _env(cache_dir: str) -> dict:
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="1", MTL_JAX_NO_PROGRESS="1")
    env.setdefault("JAX_COMPILATION_CACHE_DIR", cache_dir)
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    return env


def start(workdir: str, env: dict, log_name: str) -> subprocess.Popen:
    os.makedirs(workdir, exist_ok=True)
    log = open(os.path.join(workdir, log_name), "w")
    cmd = [sys.executable, "-m", "mtl_jax.train", "--workdir", workdir, *CONFIG]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def finish(workdir: str, env: dict, log_name: str) -> str:
    """Runs the command to completion; returns its output (raises if it fails)."""
    proc = start(workdir, env, log_name)
    proc.wait()
    with open(os.path.join(workdir, log_name)) as f:
        out = f.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{workdir}: exit {proc.returncode}\n{out[-3000:]}")
    return out


def _last_train_step(path: str) -> int:
    """The step of the last complete training row of ``metrics.jsonl`` (0 if none)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 8192))
            lines = f.read().split(b"\n")[:-1]  # the part after the last newline is incomplete
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("split") == "train":
            return int(row["step"])
    return 0


def _writing(workdir: str, at_least: int) -> int | None:
    """The step of a checkpoint being written (>= ``at_least``), or None."""
    for path in glob.glob(os.path.join(workdir, "checkpoints", "*.orbax-checkpoint-tmp*")):
        step = int(os.path.basename(path).split(".")[0])
        if step >= at_least:
            return step
    return None


def kill_when(workdir: str, env: dict, kind: str, target: int) -> str | None:
    """Starts a run and SIGKILLs it at ``target``; returns where, or None if it finished first."""
    proc = start(workdir, env, "killed.log")
    metrics = os.path.join(workdir, "metrics.jsonl")
    while proc.poll() is None:
        if kind == "step" and _last_train_step(metrics) >= target:
            where = f"after step {_last_train_step(metrics)}"
        elif kind == "write" and (step := _writing(workdir, target)) is not None:
            where = f"while writing checkpoint {step}"
        else:
            time.sleep(0.001)
            continue
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return where
    return None


def state_digests(workdir: str) -> tuple[str, str, int]:
    """sha256 of the params and of the whole state of ``workdir``'s newest checkpoint, and its
    step (restored with the config the run wrote)."""
    import jax
    import ml_collections
    import numpy as np

    from mtl_jax import loop
    from mtl_jax.checkpoint import Checkpointer, abstract_with_sharding
    from mtl_jax.data import loading, pipeline
    from mtl_jax.state import layout

    with open(os.path.join(workdir, "config.json")) as f:
        config = ml_collections.ConfigDict(json.load(f))
    schema, splits = loading.load(config.data)
    run = layout(config, schema, loop.total_steps(config, pipeline.num_rows(splits["train"])))
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    step = ckpt.latest_step()
    state = jax.device_get(ckpt.restore(step, abstract_with_sharding(run.abstract, run.sharding)))
    ckpt.close()

    def digest(tree) -> str:
        h = hashlib.sha256()
        leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
        for path, x in sorted(leaves, key=lambda item: jax.tree_util.keystr(item[0])):
            x = np.asarray(x)
            h.update(f"{jax.tree_util.keystr(path)} {x.dtype} {x.shape}".encode())
            h.update(np.ascontiguousarray(x).tobytes())
        return h.hexdigest()

    return digest(state.params), digest(state), int(step)


def metric_rows(workdir: str) -> list[tuple]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [
        tuple(sorted((k, json.dumps(v)) for k, v in r.items() if k not in VOLATILE)) for r in rows
    ]


def _resumed_at(out: str) -> str:
    """Where a rerun started, from the line the loop prints when it resumes."""
    for line in out.splitlines():
        if ": resuming at step " in line:
            return "resumed at step " + line.split(": resuming at step ")[1].split()[0]
    return "started from scratch"


def corrupt(workdir: str, how: str) -> str:
    """Damages the newest checkpoint of ``workdir``; returns what was done."""
    steps = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())
    newest = os.path.join(workdir, "checkpoints", str(steps[-1]))
    if how == "missing data-iterator state":
        victim = glob.glob(os.path.join(newest, "data", "process_*.json"))[0]
        os.remove(victim)
    else:
        files = glob.glob(os.path.join(newest, "state", "ocdbt.process_*", "d", "*"))
        victim = max(files, key=os.path.getsize)  # the largest array data file
        if how == "deleted array file":
            os.remove(victim)
        else:
            with open(victim, "r+b") as f:
                f.truncate(os.path.getsize(victim) // 2)
    return f"{how}: {os.path.relpath(victim, workdir)}"


CORRUPTIONS = ("deleted array file", "truncated array file", "missing data-iterator state")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kills", type=int, default=20, help="kill -9 trials")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill points")
    ap.add_argument("--workdir", help="where the runs go (default: a temporary directory)")
    args = ap.parse_args(argv)
    root = args.workdir or tempfile.mkdtemp(prefix="mtl_jax_faults_")
    os.makedirs(root, exist_ok=True)
    env = _env(os.path.join(root, "xla_cache"))
    rng = random.Random(args.seed)
    t0 = time.perf_counter()

    reference = os.path.join(root, "reference")
    shutil.rmtree(reference, ignore_errors=True)
    finish(reference, env, "train.log")
    ref_params, ref_state, ref_step = state_digests(reference)
    ref_rows = metric_rows(reference)
    print(f"reference run: step {ref_step}, params sha256 {ref_params}", flush=True)

    identical, kinds = 0, {"step": 0, "write": 0}
    checkpoints = list(range(CHECKPOINT_EVERY, NUM_STEPS + 1, CHECKPOINT_EVERY))
    for i in range(args.kills):
        kind = "write" if i % 3 == 2 else "step"  # a third of the kills hit a checkpoint write
        workdir = os.path.join(root, f"kill{i:02d}")
        shutil.rmtree(workdir, ignore_errors=True)
        where = None
        while where is None:  # a run that finishes before its kill point is tried again
            shutil.rmtree(workdir, ignore_errors=True)
            target = rng.randint(1, NUM_STEPS) if kind == "step" else rng.choice(checkpoints)
            where = kill_when(workdir, env, kind, target)
        torn = glob.glob(os.path.join(workdir, "checkpoints", "*.orbax-checkpoint-tmp*"))
        out = finish(workdir, env, "rerun.log")
        params, state, step = state_digests(workdir)
        same_rows = metric_rows(workdir) == ref_rows
        ok = state == ref_state and step == ref_step and same_rows
        identical += ok
        kinds[kind] += 1
        print(
            f"kill {i + 1:2d}: SIGKILL {where}"
            + (f" ({len(torn)} checkpoint write torn)" if torn else "")
            + f"; rerun {_resumed_at(out)}: "
            + f"{'bit-identical' if state == ref_state else 'DIFFERENT state'}, "
            + f"metrics.jsonl {'= reference' if same_rows else 'DIFFERS from the reference'}",
            flush=True,
        )

    fell_back = 0
    for i, how in enumerate(CORRUPTIONS):
        workdir = os.path.join(root, f"corrupt{i}")
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.copytree(reference, workdir)
        what = corrupt(workdir, how)
        out = finish(workdir, env, "rerun.log")
        skipped = [line for line in out.splitlines() if f"/{ref_step} skipped" in line]
        params, state, step = state_digests(workdir)
        moved = os.path.isdir(os.path.join(workdir, "checkpoints_unrestorable", str(ref_step)))
        ok = bool(skipped) and moved and state == ref_state and metric_rows(workdir) == ref_rows
        fell_back += ok
        print(
            f"corruption {i + 1}: {what}; rerun "
            + ("skipped it, " if skipped else "did NOT skip it, ")
            + f"{_resumed_at(out)}, "
            + ("retrained bit-identically" if state == ref_state else "DIFFERENT state"),
            flush=True,
        )
        if skipped:
            print(f"  {skipped[0][:200]}", flush=True)

    print(f"reference params sha256 {ref_params} (step {ref_step})")
    print(
        f"{identical}/{args.kills} bit-identical after kill -9 "
        f"({kinds['step']} after a random step, {kinds['write']} during a checkpoint write)"
    )
    print(f"{fell_back}/{len(CORRUPTIONS)} fell back to the previous checkpoint")
    print(f"{time.perf_counter() - t0:.0f} s; runs under {root}")
    return {
        "identical": identical,
        "kills": args.kills,
        "fell_back": fell_back,
        "corruptions": len(CORRUPTIONS),
        "params_sha256": ref_params,
    }


if __name__ == "__main__":
    summary = main()
    ok = summary["identical"] == summary["kills"] and summary["fell_back"] == summary["corruptions"]
    sys.exit(0 if ok else 1)
