"""MMoE on UCI census-income, the MMoE paper's real-data benchmark (Ma et al., KDD 2018, §6.3).

Tasks: ``income`` (> 50K) and ``never_married`` (marital status), learned independently
(``cascade="none"``, loss weights 1 : 1, ranking score 0.5 : 0.5). The default data is the
99,762-row UCI test split shipped in ``../shared/data`` with a seeded 80/10/10 split (the
199,523-row train split is not in the shared data); for the full benchmark point
``config.data.path`` at a directory with ``census-income.data.gz`` and ``census-income.test.gz``.

    python -m mtl_jax.train --config configs/census.py --workdir runs/census
    python -m mtl_jax.train --config configs/census.py:runlocal --workdir runs/census_local

``config.data.path`` is resolved against the working directory (the default assumes the repo root).
"""

import ml_collections

from configs import common


def get_config(arg=None):
    args = common.parse_arg(arg, runlocal=False, seed=0)
    c = common.get_base_config(f"seed={args.seed}", model="mmoe")
    c.data = ml_collections.ConfigDict(
        dict(
            kind="census",
            path="../shared/data/census-income/keras-mmoe/census-income.test.gz",
            seed=args.seed,
            min_count=1,
            val_split="random",
            val_fraction=0.1,
            skip_bad=False,
        )
    )
    # keras-mmoe's census setting, scaled to 29 embedded fields: 8 small experts, small towers.
    c.model.update(
        embed_dim=4,
        num_experts=8,
        expert_hidden=(32,),
        gate_hidden=(),
        tower_hidden=(16,),
        tower_activation="relu",
    )
    c.loss.update(
        cascade="none",
        label_weights=((1.0, 1.0), (1.0, 1.0)),
        loss_weights=(1.0, 1.0),
        export_weights=(0.5, 0.5),
    )
    c.optim.learning_rate = 3e-3
    c.batch_size = 512
    c.eval_batch_size = 4096
    c.num_epochs = 3
    c.log_every_steps = 50
    c.eval_every_steps = 500
    c.checkpoint_every_steps = 1000
    if args.runlocal:
        c.model.update(num_experts=4, expert_hidden=(16,), tower_hidden=(8,))
        c.num_epochs = 1
    return c
