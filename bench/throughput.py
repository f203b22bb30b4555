"""Training throughput (examples/s) of the paper's MMoE config on synthetic Ali-CCP-shaped data,
or on prepared shards.

    python bench/throughput.py [--model mmoe] [--steps 200] [--vocab-scale 1.0] [--batch 1000]
                               [--prepared DIR] [--set model.num_experts=4 ...]
                               [--dedup host|step|both] [--rounds 3]

``--prepared DIR`` reads the shards of ``python -m mtl_jax.data.prepare aliccp --out DIR``
(``config.data.kind = "prepared"``, as ``configs/aliccp.py``) instead of generating data: the
batch reader then gathers each batch from the memory-mapped columns (and the common-feature
tables), which is what a change of the shard layout can slow down.

Times the real training path (Grain pipeline → host-to-device → jitted, donated train step),
after a warm-up that includes compilation, and prints the figure with the machine it ran on.

``--dedup`` says where the sparse embedding update's touched rows are found: ``host`` (the
default, as in training: the input pipeline's prefetch thread, ``mtl_jax/touched_rows.py``) or
``step`` (``jnp.unique`` inside the step); ``both`` alternates the two ``--rounds`` times and
prints the per-round ratio, the figure to trust on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402

from configs import common  # noqa: E402
from mtl_jax import loop, optim, sharding, touched_rows  # noqa: E402
from mtl_jax.data import loading, pipeline  # noqa: E402
from mtl_jax.state import count_params, create_train_state, init_model  # noqa: E402


def machine() -> str:
    cpu = platform.processor() or "unknown cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}; {os.cpu_count()} cores; jax {jax.__version__} on "
        f"{jax.device_count()} {jax.devices()[0].platform} device(s)"
    )


def apply_overrides(config, items):
    for item in items:
        key, _, value = item.partition("=")
        target = config
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        current = target[leaf]
        target[leaf] = value if isinstance(current, str) else type(current)(eval(value))


def measure(config, steps_to_time: int, warmup: int = 20, host_dedup: bool = True) -> dict:
    schema, splits = loading.load(config.data)
    mesh = sharding.make_mesh(config.mesh)
    tx = optim.make_optimizer(config, warmup + steps_to_time)
    graphdef, params, model_state = init_model(
        schema, config.model, config.seed, config.loss.get("weighting", "static")
    )
    state = create_train_state(params, model_state, tx)
    state_sh = sharding.state_sharding(state, mesh)
    state = jax.device_put(state, state_sh)
    train_step = loop.jit_train_step(graphdef, tx, config, state_sh, sharding.batch_sharding(mesh))
    it = iter(
        pipeline.train_batches(
            loading.model_inputs(splits["train"]),
            batch_size=config.batch_size,
            num_steps=warmup + steps_to_time,
            seed=config.seed,
            prefetch=config.prefetch,
            transform=touched_rows.host_transform(
                graphdef, params, model_state, sparse=tx.sparse and host_dedup
            ),
        )
    )
    first = sharding.to_global(next(it), mesh)
    flops = step_flops(train_step, state, first)
    state, m = train_step(state, first)
    for _ in range(warmup - 1):
        state, m = train_step(state, sharding.to_global(next(it), mesh))
    jax.block_until_ready(m["loss"])
    t0 = time.perf_counter()
    for _ in range(steps_to_time):
        state, m = train_step(state, sharding.to_global(next(it), mesh))
    jax.block_until_ready(m["loss"])
    dt = time.perf_counter() - t0
    return {
        "examples_per_sec": steps_to_time * config.batch_size / dt,
        "step_ms": 1000 * dt / steps_to_time,
        "params": count_params(params),
        "flops_per_example": flops / config.batch_size,
        "gflops_per_sec": flops * steps_to_time / dt / 1e9,
    }


def step_flops(jitted_step, *args) -> float:
    """FLOPs of one compiled step by XLA's cost analysis (all devices together)."""
    return compiled_flops(jitted_step.lower(*args).compile())


def compiled_flops(compiled) -> float:
    """FLOPs of one call of an AOT-compiled function by XLA's cost analysis (all devices)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # one entry per device program in some jax versions
        cost = cost[0]
    return float(cost["flops"]) * (1 if jax.device_count() == 1 else jax.device_count())


def gemm_peak_gflops(n: int = 2048, repeats: int = 10, dtype=jnp.float32) -> float:
    """Achieved GFLOP/s of a [n, n] × [n, n] matmul in ``dtype`` on device 0: the roofline's
    ceiling (fp32 by default; bench/accelerator.py times it in bf16)."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    mm = jax.jit(lambda x: x @ x)
    jax.block_until_ready(mm(a))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeats):
            out = mm(a)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - t0) / repeats)
    return 2 * n**3 / best / 1e9


def roofline_line(result: dict, peak_gflops: float) -> str:
    return (
        f"roofline: {result['flops_per_example'] / 1e6:.1f} MFLOP/example (XLA cost analysis), "
        f"{result['gflops_per_sec']:.1f} GFLOP/s achieved = "
        f"{100 * result['gflops_per_sec'] / peak_gflops:.0f}% of the fp32 GEMM peak "
        f"{peak_gflops:.1f} GFLOP/s measured in this run"
    )


def compare_dedup(config, steps_to_time: int, rounds: int) -> None:
    """Host against in-step touched rows, alternating runs (host, step, host, ...): ms/step of
    each run, the medians and the median of the per-round ratios."""
    ms = {"host": [], "step": []}
    for r in range(rounds):
        for where in ms:
            ms[where].append(measure(config, steps_to_time, host_dedup=where == "host")["step_ms"])
            print(f"round {r + 1} dedup={where}: {ms[where][-1]:.1f} ms/step", flush=True)
    print(f"machine: {machine()}")
    ratios = [h / s for h, s in zip(ms["host"], ms["step"])]
    print(
        f"median ms/step: host {statistics.median(ms['host']):.1f}, "
        f"step {statistics.median(ms['step']):.1f}; host/step per round "
        + ", ".join(f"{x:.3f}" for x in ratios)
        + f" (median {statistics.median(ratios):.3f})"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="mmoe")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--vocab-scale", type=float, default=1.0)
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--prepared", default=None, help="a directory of prepared shards")
    ap.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
    ap.add_argument(
        "--dedup",
        choices=("host", "step", "both"),
        default="host",
        help="where the sparse update's touched rows are found (mtl_jax/touched_rows.py); "
        "both: alternate the two, --rounds times each, and print their ratio",
    )
    ap.add_argument("--rounds", type=int, default=3, help="with --dedup both")
    args = ap.parse_args()
    config = common.get_base_config(model=args.model)
    config.batch_size = args.batch
    config.data.synthetic.update(
        num_train=args.rows, num_val=1000, num_test=1000, vocab_scale=args.vocab_scale
    )
    if args.prepared:
        config.data = ml_collections.ConfigDict(
            dict(kind="prepared", path=args.prepared, extra_columns=())
        )
    apply_overrides(config, args.set)
    if args.dedup == "both":
        compare_dedup(config, args.steps, args.rounds)
        return
    r = measure(config, args.steps, host_dedup=args.dedup == "host")
    print(f"machine: {machine()}")
    data = f"prepared={args.prepared}" if args.prepared else f"vocab_scale={args.vocab_scale}"
    print(
        f"model={args.model} batch={config.batch_size} {data} "
        f"params={r['params']:,} compute_dtype={config.compute_dtype}"
    )
    print(f"train examples/s: {r['examples_per_sec']:,.0f}  ({r['step_ms']:.1f} ms/step)")
    print(roofline_line(r, gemm_peak_gflops()))


if __name__ == "__main__":
    main()
