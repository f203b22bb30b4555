"""Where the time of one train step goes: a ``jax.profiler`` trace of the jitted step, per HLO op
and per category, on whatever device jax has (the CPU here).

    python bench/profile_step.py [--model mmoe] [--batch 1000] [--steps 10] [--top 25]
                                 [--dedup host|step] [--set key=value ...]

The step is the training loop's (``loop.jit_train_step``, donated state) on device-resident
batches of the synthetic Ali-CCP-shaped data at full vocabularies, so the input pipeline is not
in the figure. After a warm-up, ``--steps`` steps are timed (wall, ms/step) and then traced; the
trace is read with ``jax.profiler.ProfileData`` and each op event of the step's module is named
by its HLO instruction and its ``op_name`` metadata (the jax name stack: ``jvp(...)`` is the
forward, ``transpose(jvp(...))`` the backward, ``embedding_gather`` and ``optimizer_update`` are
the step's named scopes). Printed: the ``--top`` ops by time per step, then the op time per step
by category:

* ``gemm``: dot ops (XLA:CPU's library fusions included) — the FLOPs;
* ``optimizer``: the rest of the ``optimizer_update`` scope (Adam, the lazy rows' gathers and
  scatters);
* ``embedding gather``: the ``embedding_gather`` scope (the touched rows and their block);
* ``lookups``: the model's reads from the block and their backward (gathers, scatters);
* ``layout``: transposes, copies, concatenations;
* ``elementwise``: everything else (activations, Dice, gates' softmax, losses, metrics).

Op times add up to more than the wall time when the CPU runtime runs independent ops at once.
``--dedup step`` finds the touched rows inside the step (``touched_rows.in_step``) instead of
in the input pipeline, to see what that costs.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
from accelerator import hlo_op_names  # noqa: E402
from jax.profiler import ProfileData  # noqa: E402
from throughput import apply_overrides, machine  # noqa: E402

from configs import common  # noqa: E402
from mtl_jax import loop, optim, sharding, touched_rows  # noqa: E402
from mtl_jax.data import loading, pipeline  # noqa: E402
from mtl_jax.state import create_train_state, init_model  # noqa: E402

CATEGORIES = ("gemm", "optimizer", "embedding gather", "lookups", "layout", "elementwise")


def op_kinds(hlo_text: str) -> dict[str, str]:
    """HLO instruction name → its opcode (``fusion``, ``dot``, ``copy``, ...)."""
    pattern = r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*\S+\s+([\w\-]+)\("
    return dict(re.findall(pattern, hlo_text, re.M))


def category(op: str, kind: str, name: str) -> str:
    """The ``CATEGORIES`` entry of an op by its instruction name, opcode and name stack."""
    if kind == "dot" or ("dot_general" in name and op.startswith("ynn_fusion")):
        return "gemm"
    if "optimizer_update" in name:
        return "optimizer"
    if "embedding_gather" in name:
        return "embedding gather"
    if any(s in name for s in ("gather", "scatter", "_take")):
        return "lookups"
    if kind in ("copy", "concatenate") or "transpose" in name.rsplit("/", 1)[-1]:
        return "layout"
    return "elementwise"


def trace_ops(compiled, state, batches, n: int) -> dict[str, float]:
    """HLO op → total op time in ns over ``n`` traced steps."""
    tmp = tempfile.mkdtemp(prefix="profile_step_")
    try:
        with jax.profiler.trace(tmp):
            for i in range(n):
                state, m = compiled(state, batches[i % len(batches)])
            jax.block_until_ready(m)
        (path,) = sorted(glob.glob(os.path.join(tmp, "**", "*.xplane.pb"), recursive=True))[-1:]
        profile = ProfileData.from_file(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ns: collections.Counter = collections.Counter()
    for plane in profile.planes:
        for line in plane.lines:
            for e in line.events:
                stats = dict(e.stats)
                if "hlo_op" in stats and "train_step" in str(stats.get("hlo_module", "")):
                    ns[str(stats["hlo_op"])] += e.duration_ns
    return ns


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mmoe")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--rows", type=int, default=20_000, help="synthetic train rows")
    ap.add_argument("--dedup", choices=("host", "step"), default="host")
    ap.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
    args = ap.parse_args(argv)

    config = common.get_base_config(model=args.model)
    config.batch_size = args.batch
    config.data.synthetic.update(num_train=args.rows, num_val=1000, num_test=1000)
    apply_overrides(config, args.set)
    schema, splits = loading.load(config.data)
    mesh = sharding.make_mesh(config.mesh)
    tx = optim.make_optimizer(config, 1000)
    graphdef, params, model_state = init_model(schema, config.model, config.seed)
    transform = touched_rows.host_transform(
        graphdef, params, model_state, sparse=tx.sparse and args.dedup == "host"
    )
    state = create_train_state(params, model_state, tx)
    state_sh = sharding.state_sharding(state, mesh, sharding.sharding_rules(config.mesh))
    state = jax.device_put(state, state_sh)
    jitted = loop.jit_train_step(graphdef, tx, config, state_sh, sharding.batch_sharding(mesh))
    host = pipeline.train_batches(
        loading.model_inputs(splits["train"]),
        batch_size=args.batch,
        num_steps=8,
        seed=config.seed,
        prefetch=0,
        transform=transform,
    )
    batches = [sharding.to_global(b, mesh) for b in host]
    compiled = jitted.lower(state, batches[0]).compile()
    hlo = compiled.as_text()
    names, kinds = hlo_op_names(hlo), op_kinds(hlo)
    for i in range(5):
        state, m = compiled(state, batches[i % len(batches)])
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for i in range(args.steps):
        state, m = compiled(state, batches[i % len(batches)])
    jax.block_until_ready(m)
    wall_ms = 1000 * (time.perf_counter() - t0) / args.steps
    ns = trace_ops(compiled, state, batches, args.steps)

    per_step = {op: t / 1e6 / args.steps for op, t in ns.items()}
    total = sum(per_step.values())
    by_cat = collections.Counter()
    for op, ms in per_step.items():
        by_cat[category(op, kinds.get(op, "?"), names.get(op, ""))] += ms
    print(f"machine: {machine()}")
    print(
        f"model={args.model} batch={args.batch} dedup={args.dedup}: {wall_ms:.1f} ms/step (wall, "
        f"{args.steps} steps), {total:.1f} ms/step of op time in the trace"
    )
    print(f"{'ms/step':>8} {'share':>6}  {'op':32} {'category':16} name stack")
    for op, ms in sorted(per_step.items(), key=lambda kv: -kv[1])[: args.top]:
        cat = category(op, kinds.get(op, "?"), names.get(op, ""))
        print(f"{ms:8.2f} {100 * ms / total:5.1f}%  {op:32} {cat:16} {names.get(op, '')[-70:]}")
    print(
        "by category (ms/step): " + ", ".join(f"{c} {by_cat.get(c, 0.0):.1f}" for c in CATEGORIES)
    )
    return {"wall_ms": wall_ms, "op_ms": total, "categories": dict(by_cat), "ops": per_step}


if __name__ == "__main__":
    main()
