"""Accelerator benchmark: training examples/s of paper MMoE, PLE and paper_full per batch, dtype
and embedding sharding, a step-time breakdown, the fraction of the bf16 matmul peak, eval rows/s,
and the AUC of bf16 against fp32 training.

    python bench/accelerator.py [--platform cpu|gpu|tpu] [--sizes full|tiny] [--budget-s 480]
                                [--out runs/accelerator.json] [--models mmoe,ple,paper_full]
                                [--batches 1000,8192,65536] [--auc-steps N] [--gemm-n N]
                                [--wheels wheels/] [--no-install]

What it runs, in this order, each part only while the time budget (``--budget-s``, default 8
minutes) lasts: a part is skipped, with the reason printed and recorded, once the time left is
shorter than the part before it took (a part that raises is recorded as failed and the run goes
on):

1. bf16 GEMM peak: the best GFLOP/s of a jitted ``[n, n] @ [n, n]`` in bfloat16 (n = 8192; tiny:
   256), measured in this run (``bench/throughput.py``'s helper).
2. The training grid of paper MMoE (the table's headline), then the dtype AUC check, the
   breakdown and eval, then PLE and paper_full: every (batch, dtype, shard_embeddings) cell of
   ``configs/<model>.py`` (full sizes: the configs' defaults, full vocabularies, batches 1,000 /
   8,192 / 65,536; ``--sizes tiny``: the configs' ``runlocal`` variant, batches 64 / 128). A cell
   is the jitted, donated ``steps.train_step`` as the training loop compiles it
   (``compute_dtype`` float32 or bfloat16, ``config.mesh.shard_embeddings`` off or on) over a few
   distinct device-resident batches cycled (with their touched embedding rows, as the input
   pipeline adds them: ``mtl_jax/touched_rows.py``), so the figure is the device's, not the input
   pipeline's (``bench/throughput.py`` times the whole path). ``% bf16 peak`` is the step's FLOPs
   (XLA cost analysis) per second over the GEMM peak of step 1.
3. dtype AUC check: paper MMoE trained a fixed number of steps (full: 120 steps at batch 8,192;
   tiny: 60 at 64; ``--auc-steps``) through the real input pipeline, once in fp32 and once in
   bf16, from the same initial params on the same batches, then click and order AUC on the same
   test rows; the target is |AUC(bf16) − AUC(fp32)| ≤ 0.002.
4. Step-time breakdown of the first model at the largest batch in bf16, two ways:
   *profiler trace*: a few fused train steps under ``jax.profiler.trace``, the trace read with
   ``jax.profiler.ProfileData`` (no extra packages), each op event attributed by its HLO
   instruction's ``op_name`` metadata to the named scopes ``steps.train_step`` puts around the
   embedding gather (the unique rows a batch touches and the block of them) and the optimizer
   update (Adam on the dense params, lazy Adam on the touched rows); every other op of the step
   is forward+backward (with the loss and metrics), ops without metadata are ``other``: op time
   per step and device, which leaves out idle gaps and counts concurrent ops twice; and
   *measured*: the same three parts as separately jitted pieces, timed one by one on the same
   batch; their sum differs from the fused step, whose ops the compiler fuses across the parts.
5. Eval rows/s: the jitted ``steps.eval_step`` (forward only, probabilities and ranking score) on
   device-resident batches of the largest batch size (tiny: 1,024), per model and dtype.

One table (model, batch, dtype, shard_embeddings, ex/s, ms/step, % of bf16 peak) is printed and,
with everything else, written as JSON to ``--out``. On one device ``shard_embeddings`` splits
the tables over a mesh of one, so its cells measure the same program as the unsharded ones.

Targets (for one H200-class GPU): paper MMoE ≥ 1M train examples/s in bf16 with
shard_embeddings off, and the bf16 AUC within 0.002 of fp32. The script prints whether each is
met by this run, whatever the platform.

Packages: the target machine's Python must already have jax with CUDA, flax, optax,
orbax-checkpoint and chex. The rest of what mtl_jax needs (``bench/accelerator_requirements.txt``:
ml-collections, grain, pyarrow) the script installs, when missing, from wheels carried beside
the repo, with no index:

    pip install --no-index --find-links wheels/ <each missing requirement>

Download those wheels here, on a machine with network access, for Python 3.11 on x86-64 Linux
(pip does not widen an explicit ``--platform`` to older manylinux tags, and grain and pyarrow
ship manylinux_2_28 wheels while array-record ships manylinux2014 ones, so both are named):

    pip download --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \\
        --platform manylinux_2_28_x86_64 -d wheels/ -r bench/accelerator_requirements.txt

and carry ``wheels/`` (about 75 MB; git ignores it) beside the repo.
``--no-install`` only reports what is missing.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(ROOT, "bench", "accelerator_requirements.txt")

#: Modules the target machine must already have (jax with the accelerator's plugin among them).
PREINSTALLED = ("jax", "flax", "optax", "orbax.checkpoint", "chex")

#: --platform → JAX_PLATFORMS (the GPU this benchmark is for is an NVIDIA one).
JAX_PLATFORMS = {"cpu": "cpu", "gpu": "cuda", "tpu": "tpu"}

MODELS = ("mmoe", "ple", "paper_full")
DTYPES = ("float32", "bfloat16")
AUC_TOLERANCE = 0.002
TARGET_EXAMPLES_PER_SEC = 1_000_000

SIZES = {
    "full": dict(
        config_arg=None,
        batches=(1000, 8192, 65536),
        gemm_n=8192,
        cycle=4,  # distinct device-resident batches per cell
        min_time_s=1.0,  # each cell is timed over about this long
        max_steps=200,
        eval_batch=65536,
        auc_batch=8192,
        auc_steps=120,
        auc_test_rows=200_000,
        trace_steps=5,
    ),
    "tiny": dict(
        config_arg="runlocal",
        batches=(64, 128),
        gemm_n=256,
        cycle=2,
        min_time_s=0.05,
        max_steps=10,
        eval_batch=1024,
        auc_batch=64,
        auc_steps=60,
        auc_test_rows=4000,
        trace_steps=3,
    ),
}


def wheel_requirements(path: str = REQUIREMENTS) -> dict[str, str]:
    """Import name → pip requirement, from ``path`` (``requirement  # import: module`` lines)."""
    out = {}
    with open(path) as f:
        for line in f:
            req, _, comment = line.partition("#")
            req, comment = req.strip(), comment.strip()
            if not req:
                continue
            if not comment.startswith("import:"):
                raise ValueError(f"{path}: {line.strip()!r} needs a '# import: module' comment")
            out[comment.removeprefix("import:").strip()] = req
    return out


def missing_modules(names) -> list[str]:
    """The names among ``names`` that this Python cannot import (nothing is imported)."""
    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def ensure_packages(wheels_dir: str, install: bool = True) -> list[str]:
    """Installs the missing wheel requirements from ``wheels_dir`` without an index.

    Returns the requirements it installed; exits with the reason when a preinstalled module is
    missing, or a requirement is missing and cannot be installed.
    """
    absent = missing_modules(PREINSTALLED)
    if absent:
        sys.exit(
            f"missing {absent}: this machine's Python must already have jax (with the "
            "accelerator's plugin), flax, optax, orbax-checkpoint and chex"
        )
    reqs = wheel_requirements()
    todo = [reqs[m] for m in missing_modules(reqs)]
    if not todo:
        return []
    if not install or not os.path.isdir(wheels_dir):
        why = "--no-install" if not install else f"no wheel directory {wheels_dir}"
        sys.exit(
            f"missing {todo} ({why}); download them with: pip download --only-binary=:all: "
            "--python-version 3.11 --platform manylinux2014_x86_64 --platform "
            "manylinux_2_28_x86_64 -d wheels/ -r bench/accelerator_requirements.txt"
        )
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", wheels_dir]
    print("installing:", " ".join(cmd + todo), flush=True)
    subprocess.run(cmd + todo, check=True)
    importlib.invalidate_caches()
    return todo


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--platform", choices=("cpu", "gpu", "tpu"), default=None)
    ap.add_argument("--sizes", choices=tuple(SIZES), default="full")
    ap.add_argument("--budget-s", type=float, default=480.0, help="skip parts after this long")
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "accelerator.json"))
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    ap.add_argument("--batches", default=None, help="comma-separated; default: the sizes'")
    ap.add_argument("--auc-steps", type=int, default=None, help="default: the sizes'")
    ap.add_argument("--gemm-n", type=int, default=None, help="GEMM side; default: the sizes'")
    ap.add_argument("--wheels", default=os.path.join(ROOT, "wheels"))
    ap.add_argument("--no-install", action="store_true", help="only report missing packages")
    args = ap.parse_args(argv)
    args.models = tuple(m for m in args.models.split(",") if m)
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        ap.error(f"--models: {unknown} not among {MODELS}")
    return args


class Budget:
    """Wall-clock budget: ``over(what)`` is true, and records why, once the time left is shorter
    than the part before took (``last``, set by the caller), so a run ends near its budget
    instead of a whole part after it."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.skipped: list[dict] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def over(self, what: str) -> bool:
        elapsed = self.elapsed()
        if elapsed + self.last <= self.seconds:
            return False
        reason = (
            f"time budget of {self.seconds:.0f} s spent or too short for it ({elapsed:.0f} s "
            f"elapsed, the part before took {self.last:.0f} s)"
        )
        print(f"skipped {what}: {reason}", flush=True)
        self.skipped.append({"what": what, "reason": reason})
        return True


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.platform:
        # Not "gpu": jax expands that alias to cuda, rocm and oneapi and fails on the absent ones.
        os.environ["JAX_PLATFORMS"] = JAX_PLATFORMS[args.platform]
    ensure_packages(args.wheels, install=not args.no_install)
    sys.path.insert(0, ROOT)
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    bench = _Bench(args)  # imports jax: after the platform is chosen and packages are present
    return bench.run()


class _Bench:
    def __init__(self, args):
        import jax
        import throughput

        self.jax, self.throughput = jax, throughput
        self.args = args
        found = jax.devices()[0].platform
        if args.platform and found != args.platform:
            sys.exit(f"--platform {args.platform}: jax found {found} devices")
        self.size = dict(SIZES[args.sizes])
        if args.batches:
            self.size["batches"] = tuple(int(b) for b in args.batches.split(","))
        if args.auc_steps is not None:
            self.size["auc_steps"] = args.auc_steps
        if args.gemm_n is not None:
            self.size["gemm_n"] = args.gemm_n
        self.budget = Budget(args.budget_s)
        self._data_cache: dict[str, tuple] = {}
        self.result: dict = {
            "machine": throughput.machine(),
            "platform": jax.devices()[0].platform,
            "device": jax.devices()[0].device_kind,
            "devices": jax.device_count(),
            "sizes": args.sizes,
            "budget_s": args.budget_s,
            "train": [],
            "eval": [],
            "breakdown": [],
            "auc": None,
            "skipped": self.budget.skipped,
            "failed": [],
        }

    # -- configs and data -----------------------------------------------------------------------

    def config(self, model: str):
        import importlib

        config = importlib.import_module(f"configs.{model}").get_config(self.size["config_arg"])
        config.data.synthetic.update(
            num_train=max(self.size["cycle"] * max(self.size["batches"]), self.size["eval_batch"]),
            num_val=1000,
            num_test=1000,
        )
        return config

    def data(self, data_config):
        """(schema, splits) of ``data_config``, generated once per distinct data config."""
        from mtl_jax.data import loading

        key = data_config.to_json(sort_keys=True)
        if key not in self._data_cache:
            self._data_cache[key] = loading.load(data_config)
        return self._data_cache[key]

    def setup(self, config, schema):
        """Mesh, optimizer, graphdef, sharded state and shardings for ``config``."""
        from mtl_jax import optim, sharding
        from mtl_jax.state import create_train_state, init_model

        jax = self.jax
        mesh = sharding.make_mesh(config.mesh)
        tx = optim.make_optimizer(config, 10_000)
        graphdef, params, model_state = init_model(
            schema, config.model, config.seed, config.loss.get("weighting", "static")
        )
        state = create_train_state(params, model_state, tx)
        state_sh = sharding.state_sharding(state, mesh, sharding.sharding_rules(config.mesh))
        state = jax.device_put(state, state_sh)
        regression = tuple(schema.is_regression(k) for k in range(schema.num_tasks))
        return mesh, tx, graphdef, state, state_sh, sharding.batch_sharding(mesh), regression

    def device_batches(self, columns, batch_size: int, count: int, mesh, transform=None) -> list:
        """``count`` consecutive batches on the device; ``transform``: the input pipeline's
        per-batch function (the touched rows of the training pipeline)."""
        from mtl_jax import sharding
        from mtl_jax.data import loading

        out = []
        for i in range(count):
            host = {k: v[i * batch_size : (i + 1) * batch_size] for k, v in columns.items()}
            host = loading.model_inputs(host)
            out.append(sharding.to_global(host if transform is None else transform(host), mesh))
        return out

    @staticmethod
    def touched(graphdef, state, tx):
        """The training pipeline's per-batch transform (``touched_rows.host_transform``): the
        timed steps get their touched rows with the batch, as in training."""
        from mtl_jax import touched_rows

        return touched_rows.host_transform(
            graphdef, state.params, state.model_state, sparse=tx.sparse
        )

    # -- timing ---------------------------------------------------------------------------------

    def time_calls(self, call, batches, carry=None) -> tuple[float, int]:
        """Seconds per call of ``call(carry, batch) -> (carry, out)`` over cycled ``batches``,
        after one warm-up call; runs for about ``min_time_s`` (2 to ``max_steps`` calls)."""
        jax = self.jax

        def run(n, carry):
            out = None
            for i in range(n):
                carry, out = call(carry, batches[i % len(batches)])
            jax.block_until_ready((carry, out))
            return carry

        carry = run(1, carry)
        t0 = time.perf_counter()
        carry = run(2, carry)
        per = (time.perf_counter() - t0) / 2
        n = int(min(self.size["max_steps"], max(2, self.size["min_time_s"] / max(per, 1e-9))))
        t0 = time.perf_counter()
        run(n, carry)
        return (time.perf_counter() - t0) / n, n

    # -- parts ----------------------------------------------------------------------------------

    def gemm_peak(self) -> None:
        import jax.numpy as jnp

        n = self.size["gemm_n"]
        gflops = self.throughput.gemm_peak_gflops(n=n, dtype=jnp.bfloat16)
        self.result["gemm"] = {"n": n, "dtype": "bfloat16", "gflops": gflops}
        print(f"bf16 GEMM peak: {gflops:,.1f} GFLOP/s ([{n}, {n}] @ [{n}, {n}])", flush=True)

    def train_cell(self, model: str, batch: int, dtype: str, shard: bool) -> dict:
        from mtl_jax import loop

        config = self.config(model)
        config.batch_size = batch
        config.compute_dtype = dtype
        config.mesh.shard_embeddings = shard
        schema, splits = self.data(config.data)
        mesh, tx, graphdef, state, state_sh, batch_sh, regression = self.setup(config, schema)
        jitted = loop.jit_train_step(graphdef, tx, config, state_sh, batch_sh, regression)
        batches = self.device_batches(
            splits["train"], batch, self.size["cycle"], mesh, self.touched(graphdef, state, tx)
        )
        t0 = time.perf_counter()
        compiled = jitted.lower(state, batches[0]).compile()
        compile_s = time.perf_counter() - t0
        flops = self.throughput.compiled_flops(compiled)
        sec, n = self.time_calls(compiled, batches, state)
        peak = self.result.get("gemm", {}).get("gflops")
        row = {
            "model": model,
            "batch": batch,
            "dtype": dtype,
            "shard_embeddings": shard,
            "examples_per_sec": batch / sec,
            "ms_per_step": 1000 * sec,
            "pct_bf16_peak": 100 * flops / sec / 1e9 / peak if peak else None,
            "flops_per_example": flops / batch,
            "timed_steps": n,
            "compile_s": compile_s,
        }
        print(_table_line(row), flush=True)
        return row

    def eval_cell(self, model: str, dtype: str) -> dict:
        from mtl_jax import loop

        batch = self.size["eval_batch"]
        config = self.config(model)
        config.compute_dtype = dtype
        schema, splits = self.data(config.data)
        mesh, _, graphdef, state, state_sh, batch_sh, regression = self.setup(config, schema)
        jitted = loop.jit_eval_step(
            graphdef, config, state_sh.params, state_sh.model_state, batch_sh, regression
        )
        batches = self.device_batches(splits["train"], batch, 1, mesh)
        compiled = jitted.lower(state.params, state.model_state, batches[0]).compile()
        sec, n = self.time_calls(
            lambda c, b: (c, compiled(state.params, state.model_state, b)), batches
        )
        row = {"model": model, "batch": batch, "dtype": dtype, "rows_per_sec": batch / sec}
        print(f"eval {model} {dtype} batch {batch}: {batch / sec:,.0f} rows/s", flush=True)
        return row

    def _full_step_ms(self, model: str, batch: int, dtype: str) -> float | None:
        """ms/step of the grid's cell of this model, batch and dtype with shard_embeddings off."""
        key = (model, batch, dtype, False)
        for r in self.result["train"]:
            if (r["model"], r["batch"], r["dtype"], r["shard_embeddings"]) == key:
                return r["ms_per_step"]
        return None

    def trace_breakdown(self, model: str, batch: int, dtype: str) -> dict | None:
        """The fused train step's op time per step from a profiler trace, by the scope of each op
        (see ``attribute_trace``); None when the trace has no op events to attribute."""
        import glob
        import shutil
        import tempfile

        from jax.profiler import ProfileData

        from mtl_jax import loop

        jax = self.jax
        config = self.config(model)
        config.batch_size = batch
        config.compute_dtype = dtype
        schema, splits = self.data(config.data)
        mesh, tx, graphdef, state, state_sh, batch_sh, regression = self.setup(config, schema)
        jitted = loop.jit_train_step(graphdef, tx, config, state_sh, batch_sh, regression)
        batches = self.device_batches(
            splits["train"], batch, self.size["cycle"], mesh, self.touched(graphdef, state, tx)
        )
        compiled = jitted.lower(state, batches[0]).compile()
        op_names = hlo_op_names(compiled.as_text())
        state, m = compiled(state, batches[0])
        jax.block_until_ready(m)
        n = self.size["trace_steps"]
        tmp = tempfile.mkdtemp(prefix="accelerator_trace_")
        try:
            t0 = time.perf_counter()
            with jax.profiler.trace(tmp):
                for i in range(n):
                    state, m = compiled(state, batches[i % len(batches)])
                jax.block_until_ready(m)
            wall = time.perf_counter() - t0
            files = sorted(glob.glob(os.path.join(tmp, "**", "*.xplane.pb"), recursive=True))
            if not files:
                print("the profiler wrote no .xplane.pb", flush=True)
                return None
            device_only = self.result["platform"] != "cpu"
            ns, devices = attribute_trace(ProfileData.from_file(files[-1]), op_names, device_only)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if not ns:
            where = "device " if device_only else ""
            print(f"the profiler trace had no {where}op events to attribute", flush=True)
            return None
        row = {"model": model, "batch": batch, "dtype": dtype, "method": "profiler trace"}
        row.update({f"{k}_ms": ns.get(k, 0) / 1e6 / n / devices for k in SCOPES})
        row["sum_ms"] = sum(row[f"{k}_ms"] for k in SCOPES)
        row["traced_steps"], row["devices"] = n, devices
        row["traced_wall_ms_per_step"] = 1000 * wall / n
        row["full_step_ms"] = self._full_step_ms(model, batch, dtype)
        print(_breakdown_line(row), flush=True)
        return row

    def breakdown(self, model: str, batch: int, dtype: str) -> dict:
        """The train step as three separately jitted pieces (see the module docstring)."""
        import jax.numpy as jnp
        import optax

        from mtl_jax import losses, optim, steps, weighting

        jax = self.jax
        config = self.config(model)
        config.batch_size = batch
        config.compute_dtype = dtype
        schema, splits = self.data(config.data)
        mesh, tx, graphdef, state, _, _, regression = self.setup(config, schema)
        if not tx.sparse or config.loss.get("weighting", "static") != "static":
            raise ValueError("the breakdown covers the sparse embedding update, static weighting")
        (b,) = self.device_batches(
            splits["train"], batch, 1, mesh, self.touched(graphdef, state, tx)
        )
        _, model_params = weighting.split_params(state.params)
        loss_cfg = config.loss

        gather = jax.jit(functools.partial(steps._compact_tables, graphdef))

        def fwd_bwd(rest, compact, model_state, batch, step):
            key = jax.random.fold_in(jax.random.key(config.seed), step)

            def loss_fn(diff):
                out, new_model_state = steps._forward(
                    graphdef,
                    optim.merge_tables(*diff),
                    model_state,
                    batch,
                    train=True,
                    key=key,
                    compute_dtype=steps._compute_dtype(config.compute_dtype),
                )
                task = losses.task_losses(
                    out["logits"],
                    batch["labels"],
                    cascade=loss_cfg.cascade,
                    label_weights=loss_cfg.label_weights,
                    valid=batch.get("valid"),
                    regression=regression,
                )
                total = losses.weighted_total(task, loss_cfg.loss_weights)
                if out.get("aux_loss") is not None:
                    total = total + out["aux_loss"]
                return total, new_model_state

            (total, _), grads = jax.value_and_grad(loss_fn, has_aux=True)((rest, compact))
            return total, grads

        def update(carry, grads, rows, step):
            rest, tables, tx_state, embed_state = carry
            g_rest, g_rows = grads
            updates, tx_state = tx.model_tx.update(g_rest, tx_state, rest)
            rest = optax.apply_updates(rest, updates)
            tables, embed_state = tx.update_rows(tables, embed_state, rows, g_rows, step)
            return rest, tables, tx_state, embed_state

        fwd_bwd = jax.jit(fwd_bwd)
        update = jax.jit(update, donate_argnums=(0,))
        step = jnp.zeros((), jnp.int32)
        rows, compact, local_batch = gather(model_params, state.model_state, b)
        tables, rest = optim.split_tables(model_params)
        _, grads = fwd_bwd(rest, compact, state.model_state, local_batch, step)
        carry = (rest, tables, state.opt_state["tx"], state.opt_state["embed"])
        pieces = {
            "embedding_gather": self.time_calls(
                lambda c, x: (c, gather(model_params, state.model_state, x)), [b]
            )[0],
            "forward_backward": self.time_calls(
                lambda c, x: (c, fwd_bwd(rest, compact, state.model_state, x, step)),
                [local_batch],
            )[0],
            "optimizer_update": self.time_calls(
                lambda c, _: (update(c, grads, rows, step), None), [None], carry
            )[0],
        }
        row = {"model": model, "batch": batch, "dtype": dtype, "method": "measured"}
        row.update({f"{k}_ms": 1000 * v for k, v in pieces.items()})
        row["sum_ms"] = 1000 * sum(pieces.values())
        row["full_step_ms"] = self._full_step_ms(model, batch, dtype)
        print(_breakdown_line(row), flush=True)
        return row

    def dtype_auc(self) -> dict:
        """Paper MMoE trained ``auc_steps`` steps in fp32 and in bf16 on the same batches."""
        from mtl_jax import eval_report, loop, metrics
        from mtl_jax.data import loading, pipeline
        from mtl_jax.sharding import to_global

        jax = self.jax
        batch, num_steps = self.size["auc_batch"], self.size["auc_steps"]
        config = self.config("mmoe")
        config.batch_size = batch
        config.data.synthetic.update(
            num_train=batch * num_steps, num_test=self.size["auc_test_rows"]
        )
        schema, splits = self.data(config.data)
        out = {"model": "mmoe", "batch": batch, "steps": num_steps, "test_rows": None}
        for dtype in DTYPES:
            config.compute_dtype = dtype
            mesh, tx, graphdef, state, state_sh, batch_sh, regression = self.setup(config, schema)
            train_step = loop.jit_train_step(graphdef, tx, config, state_sh, batch_sh, regression)
            eval_step = loop.jit_eval_step(
                graphdef, config, state_sh.params, state_sh.model_state, batch_sh, regression
            )
            it = pipeline.train_batches(
                loading.model_inputs(splits["train"]),
                batch_size=batch,
                num_steps=num_steps,
                seed=config.seed,
                prefetch=config.prefetch,
                transform=self.touched(graphdef, state, tx),
            )
            t0 = time.perf_counter()
            for host in it:
                state, m = train_step(state, to_global(host, mesh))
            loss = float(jax.device_get(m["loss"]))
            pred = eval_report.predict_split(
                eval_step,
                state.params,
                state.model_state,
                splits["test"],
                batch_size=min(self.size["eval_batch"], 10_000),
                mesh=mesh,
            )
            out["test_rows"] = len(pred["labels"])
            out[dtype] = {
                "click_auc": metrics.auc(pred["labels"][:, 0], pred["probs"][:, 0]),
                "order_auc": metrics.auc(pred["labels"][:, 1], pred["probs"][:, 1]),
                "final_loss": loss,
                "seconds": time.perf_counter() - t0,
            }
        for task in ("click", "order"):
            diff = out["bfloat16"][f"{task}_auc"] - out["float32"][f"{task}_auc"]
            out[f"{task}_auc_diff"] = diff
        out["within_tolerance"] = all(
            abs(out[f"{t}_auc_diff"]) <= AUC_TOLERANCE for t in ("click", "order")
        )
        print(_auc_line(out), flush=True)
        return out

    # -- the run --------------------------------------------------------------------------------

    def part(self, what: str, fn, into: str | None = None) -> None:
        """Runs ``fn`` unless the budget is spent; its result goes to ``result[into]`` (a list is
        appended to). A part that raises is recorded under ``failed`` and the run goes on: one
        cell out of memory or a profiler that cannot start must not lose the others. The JSON
        is rewritten after every part, so a run killed midway still leaves what it measured."""
        if self.budget.over(what):
            return
        t0 = time.perf_counter()
        try:
            out = fn()
        except Exception as e:  # reported below and in the JSON, not swallowed
            msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            print(f"failed {what}: {msg}", flush=True)
            self.result["failed"].append({"what": what, "error": msg})
            out = None
        self.budget.last = time.perf_counter() - t0
        if into is not None and out is not None:
            if isinstance(self.result[into], list):
                self.result[into].append(out)
            else:
                self.result[into] = out
        self.save()

    def save(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.args.out)), exist_ok=True)
        with open(self.args.out, "w") as f:
            json.dump(self.result, f, indent=2)

    def grid(self, model: str) -> None:
        for batch in self.size["batches"]:
            for dtype in DTYPES:
                for shard in (False, True):
                    self.part(
                        f"train {model} batch={batch} {dtype} shard_embeddings={shard}",
                        functools.partial(self.train_cell, model, batch, dtype, shard),
                        "train",
                    )

    def run(self) -> dict:
        r = self.result
        print(f"machine: {r['machine']}; device: {r['device']}", flush=True)
        print(f"sizes={self.args.sizes} budget={self.args.budget_s:.0f} s", flush=True)
        self.part("bf16 GEMM peak", self.gemm_peak)
        print(_table_header(), flush=True)
        models = self.args.models
        if "mmoe" in models:
            self.grid("mmoe")
            self.part("dtype AUC check", self.dtype_auc, "auc")
        largest = max(self.size["batches"])
        first = "mmoe" if "mmoe" in models else models[0]
        self.part(
            f"trace breakdown {first} batch={largest} bfloat16",
            functools.partial(self.trace_breakdown, first, largest, "bfloat16"),
            "breakdown",
        )
        self.part(
            f"measured breakdown {first} batch={largest} bfloat16",
            functools.partial(self.breakdown, first, largest, "bfloat16"),
            "breakdown",
        )
        for model in models:
            for dtype in DTYPES:
                self.part(
                    f"eval {model} {dtype}", functools.partial(self.eval_cell, model, dtype), "eval"
                )
        for model in models:
            if model != "mmoe":
                self.grid(model)
        r["targets"] = targets(r)
        r["elapsed_s"] = self.budget.elapsed()
        print()
        print(format_report(r), flush=True)
        self.save()
        print(f"wrote {self.args.out}", flush=True)
        return r


# -- reporting ----------------------------------------------------------------------------------

_COLUMNS = (
    ("model", 10),
    ("batch", 7),
    ("dtype", 9),
    ("shard_emb", 9),
    ("ex/s", 12),
    ("ms/step", 9),
    ("% bf16 peak", 11),
)


def _table_header() -> str:
    return " ".join(f"{name:>{w}}" for name, w in _COLUMNS)


def _table_line(row: dict) -> str:
    pct = row.get("pct_bf16_peak")
    values = (
        row["model"],
        f"{row['batch']:,}",
        row["dtype"],
        "on" if row["shard_embeddings"] else "off",
        f"{row['examples_per_sec']:,.0f}",
        f"{row['ms_per_step']:.2f}",
        "n/a" if pct is None else f"{pct:.2f}",
    )
    return " ".join(f"{v:>{w}}" for v, (_, w) in zip(values, _COLUMNS))


def _breakdown_line(row: dict) -> str:
    full = row["full_step_ms"]
    if row["method"] == "measured":
        how = "measured: separately jitted pieces"
    else:
        how = (
            f"profiler trace: op time per step and device over {row['traced_steps']} traced "
            "steps of the fused step"
        )
    line = (
        f"breakdown {row['model']} batch {row['batch']:,} {row['dtype']} ({how}): embedding "
        f"gather {row['embedding_gather_ms']:.2f} ms, forward+backward "
        f"{row['forward_backward_ms']:.2f} ms, optimizer update "
        f"{row['optimizer_update_ms']:.2f} ms"
    )
    if row["method"] != "measured":
        line += f", other {row['other_ms']:.2f} ms"
    line += f"; sum {row['sum_ms']:.2f} ms"
    return line + ("" if full is None else f" vs the fused step {full:.2f} ms")


#: Op categories of the trace breakdown: the first two are named scopes of ``steps.train_step``;
#: every other op of the step with metadata is forward+backward (with the loss and metrics);
#: ops without metadata are other.
SCOPES = ("embedding_gather", "forward_backward", "optimizer_update", "other")


def hlo_op_names(hlo_text: str) -> dict[str, str]:
    """HLO instruction name → its ``op_name`` metadata (jax's name stack), from compiled HLO."""
    pattern = r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=.*?metadata=\{[^}]*?op_name="([^"]*)"'
    return dict(re.findall(pattern, hlo_text, re.M))


def op_scope(op_name: str | None) -> str:
    """The ``SCOPES`` category of an op by its name stack."""
    if not op_name:
        return "other"
    parts = op_name.split("/")
    for scope in ("embedding_gather", "optimizer_update"):
        if scope in parts:
            return scope
    return "forward_backward"


def attribute_trace(
    profile, op_names: dict[str, str], device_only: bool = False
) -> tuple[dict[str, float], int]:
    """(category → total op time in ns, number of devices) of a ``jax.profiler.ProfileData``.

    Counts the events that carry an ``hlo_op`` stat of the train step's module; where device
    planes (``/device:...``, e.g. GPU kernels) have such events, only those, so that host-side
    launches are not counted twice. ``device_only`` (an accelerator): never host events, whose
    times would be launch times, not the device's.
    """
    events = []
    for plane in profile.planes:
        for line in plane.lines:
            for e in line.events:
                stats = dict(e.stats)
                if "hlo_op" in stats and "train_step" in str(stats.get("hlo_module", "")):
                    events.append((plane.name, stats, e.duration_ns))
    if device_only or any(p.startswith("/device:") for p, _, _ in events):
        events = [ev for ev in events if ev[0].startswith("/device:")]
    out: dict[str, float] = {}
    for _, stats, ns in events:
        k = op_scope(op_names.get(str(stats["hlo_op"])))
        out[k] = out.get(k, 0.0) + float(ns)
    devices = len({(p, stats.get("device_ordinal")) for p, stats, _ in events})
    return out, max(devices, 1)


def _auc_line(auc: dict) -> str:
    f32, b16 = auc["float32"], auc["bfloat16"]
    return (
        f"dtype AUC ({auc['model']}, {auc['steps']} steps at batch {auc['batch']:,}, "
        f"{auc['test_rows']:,} test rows): click fp32 {f32['click_auc']:.4f} bf16 "
        f"{b16['click_auc']:.4f} (diff {auc['click_auc_diff']:+.4f}); order fp32 "
        f"{f32['order_auc']:.4f} bf16 {b16['order_auc']:.4f} (diff {auc['order_auc_diff']:+.4f})"
    )


def targets(result: dict) -> dict:
    """Whether this run met the issue's targets (meant for one H200-class GPU)."""
    rows = [
        r
        for r in result["train"]
        if r["model"] == "mmoe" and r["dtype"] == "bfloat16" and not r["shard_embeddings"]
    ]
    best = max(rows, key=lambda r: r["examples_per_sec"]) if rows else None
    auc = result.get("auc")
    return {
        "mmoe_bf16_examples_per_sec": best and best["examples_per_sec"],
        "mmoe_bf16_batch": best and best["batch"],
        "throughput_met": bool(best and best["examples_per_sec"] >= TARGET_EXAMPLES_PER_SEC),
        "auc_met": bool(auc and auc["within_tolerance"]),
    }


def format_report(result: dict) -> str:
    lines = [_table_header()]
    lines += [_table_line(r) for r in result["train"]]
    gemm = result.get("gemm")
    if gemm:
        lines.append(
            f"% bf16 peak: step FLOP/s (XLA cost analysis) over the bf16 GEMM peak measured in "
            f"this run, {gemm['gflops']:,.1f} GFLOP/s"
        )
    lines += [_breakdown_line(r) for r in result["breakdown"]]
    lines += [
        f"eval {r['model']} {r['dtype']} batch {r['batch']:,}: {r['rows_per_sec']:,.0f} rows/s"
        for r in result["eval"]
    ]
    if result.get("auc"):
        lines.append(_auc_line(result["auc"]))
    t = result["targets"]
    where = "" if result["platform"] == "gpu" else f" (this run is on {result['platform']})"
    if t["mmoe_bf16_examples_per_sec"] is None:
        lines.append("target ≥ 1M ex/s (paper MMoE, bf16, shard_embeddings off): not measured")
    else:
        lines.append(
            f"target ≥ 1M ex/s (paper MMoE, bf16, shard_embeddings off) on one H200-class GPU"
            f"{where}: best {t['mmoe_bf16_examples_per_sec']:,.0f} ex/s at batch "
            f"{t['mmoe_bf16_batch']:,}: {'met' if t['throughput_met'] else 'NOT met'}"
        )
    if result.get("auc") is None:
        lines.append(f"target |AUC(bf16) − AUC(fp32)| ≤ {AUC_TOLERANCE}: not measured")
    else:
        lines.append(
            f"target |AUC(bf16) − AUC(fp32)| ≤ {AUC_TOLERANCE}{where}: "
            f"{'met' if t['auc_met'] else 'NOT met'}"
        )
    lines += [f"skipped {s['what']}: {s['reason']}" for s in result["skipped"]]
    lines += [f"failed {f['what']}: {f['error']}" for f in result.get("failed", [])]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
