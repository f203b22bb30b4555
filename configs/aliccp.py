"""Any model on real Ali-CCP, read from the shards of ``python -m mtl_jax.data.prepare aliccp``.

    python -m mtl_jax.data.prepare aliccp --raw-dir ~/data/aliccp --out ~/data/aliccp_shards
    python -m mtl_jax.train --config configs/aliccp.py \\
        --config.data.path=~/data/aliccp_shards --workdir runs/aliccp_mmoe
    python -m mtl_jax.train --config configs/aliccp.py:model=sequence_mmoe \\
        --config.data.path=~/data/aliccp_shards --workdir runs/aliccp_din

``model=NAME`` takes the model settings of ``configs/NAME.py`` (default ``mmoe``; e.g. ``ple``,
``esmm``, ``sequence_mmoe``) and replaces its data with the prepared shards, which are
memory-mapped (``config.data.path`` is required; it is resolved against the working directory).
``runlocal`` keeps the model's small settings and trains 200 steps; ``paper`` trains with the
paper's protocol (``configs/common.py``, e.g. ``configs/aliccp.py:model=paper_full,paper``).
``multisource`` and ``paper_full`` train on shards with one source, the improved loss inert.
"""

import importlib

import ml_collections

from configs import common


def get_config(arg=None):
    args = common.parse_arg(arg, **common.BASE_ARGS, model="mmoe")
    flags = [name for name in ("runlocal", "paper") if args[name]]
    inner = ",".join([f"seed={args.seed}", *flags])
    try:
        model_config = importlib.import_module(f"configs.{args.model}")
    except ModuleNotFoundError:
        raise ValueError(
            f"configs/aliccp.py: model={args.model!r} has no configs/{args.model}.py"
        ) from None
    c = model_config.get_config(inner)
    c.data = ml_collections.ConfigDict(
        dict(
            kind="prepared",
            path=ml_collections.config_dict.placeholder(str),
            extra_columns=(),
        )
    )
    if args.runlocal:
        c.num_steps = 200
        c.eval_every_steps = 100
        c.checkpoint_every_steps = 100
    return c
