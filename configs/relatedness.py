"""The MMoE paper's task-relatedness benchmark (Ma et al., KDD 2018, sections 3.2 and 5.2).

    python -m mtl_jax.train --config configs/relatedness.py:corr=0.5,model=mmoe --workdir runs/rel
    python -m mtl_jax.train --config configs/relatedness.py:runlocal --workdir runs/rel_local
    python -m mtl_jax.train --config configs/relatedness.py:binary,corr=0.0 --workdir runs/rel_bin

Arguments: ``corr`` (p, the cosine of the two tasks' weight vectors), ``model`` (shared_bottom,
omoe, mmoe, cgc, ple, mlp), ``seed`` (data and initialisation), ``binary`` (Bernoulli labels of
the standardised targets instead of the regression labels), ``width`` (units per expert, 16;
Shared-Bottom's width follows to keep the parameter counts equal), ``runlocal``. The data is
``mtl_jax/data/relatedness.py`` (d = 100 inputs, m = 10 sinusoids, scale c = 1, noise variance
0.01).

Model sizes follow the paper's synthetic experiment: 8 experts, each one hidden layer of 16 ReLU
units; towers of one hidden layer of 8 ReLU units; MMoE / OMoE gates are linear softmax gates on
the input. Shared-Bottom is one hidden layer whose width is chosen so that its parameter count
matches MMoE's, as the paper does (``shared_bottom_width``). CGC has 2 experts per task and 4
shared (8 in all), PLE two such levels. Training: Adam at 1e-3, batch 128, 8 epochs over 100,000
training rows, one validation evaluation every 250 steps (the learning curves), final metrics on
10,000 test rows. These settings were fixed before any model was run on this data.
"""

import ml_collections

from configs import common

MODELS = ("shared_bottom", "omoe", "mmoe", "cgc", "ple", "mlp")

NUM_EXPERTS = 8
EXPERT_WIDTH = 16
TOWER_WIDTH = 8


def mmoe_param_count(
    input_dim: int, num_tasks: int = 2, num_gates: int | None = None, width: int = EXPERT_WIDTH
) -> int:
    """Parameters of the MMoE of this config (experts, gates with biases, towers, heads)."""
    E, H, K, T = NUM_EXPERTS, width, TOWER_WIDTH, num_tasks
    G = T if num_gates is None else num_gates
    experts = E * (input_dim * H + H)
    gates = G * (input_dim * E + E)
    towers = T * (H * K + K + K + 1)
    return experts + gates + towers


def shared_bottom_width(input_dim: int, num_tasks: int = 2, width: int = EXPERT_WIDTH) -> int:
    """Width W of the Shared-Bottom layer whose parameter count is closest to MMoE's:
    (d·W + W) + T·(W·K + K + K + 1) = MMoE's."""
    K, T = TOWER_WIDTH, num_tasks
    per_unit = input_dim + 1 + T * K
    fixed = T * (K + K + 1)
    return max(1, round((mmoe_param_count(input_dim, T, width=width) - fixed) / per_unit))


def get_config(arg=None):
    args = common.parse_arg(
        arg, runlocal=False, seed=0, model="mmoe", corr=0.5, binary=False, width=EXPERT_WIDTH
    )
    if args.width < 1:
        raise ValueError(f"configs/relatedness.py: width={args.width} must be >= 1")
    if args.model not in MODELS:
        raise ValueError(f"configs/relatedness.py: model={args.model!r} is not one of {MODELS}")
    c = common.get_base_config(f"seed={args.seed}", model=args.model)
    c.data = ml_collections.ConfigDict(
        dict(
            kind="relatedness",
            relatedness=ml_collections.ConfigDict(
                dict(
                    seed=args.seed,
                    correlation=args.corr,
                    num_train=100_000,
                    num_val=10_000,
                    num_test=10_000,
                    input_dim=100,
                    num_sines=10,
                    scale=1.0,
                    noise_std=0.1,
                    shape_seed=0,
                    task_type="binary" if args.binary else "regression",
                )
            ),
        )
    )
    d = c.data.relatedness.input_dim
    c.model.update(
        embed_dim=1,  # no categorical fields: no tables are built
        num_experts=NUM_EXPERTS,
        expert_hidden=(args.width,),
        gate_hidden=(),
        tower_hidden=(TOWER_WIDTH,),
        expert_activation="relu",
        tower_activation="relu",
    )
    if args.model == "shared_bottom":
        c.model.expert_hidden = (shared_bottom_width(d, width=args.width),)
    if args.model in ("cgc", "ple"):
        c.model.num_specific_experts = 2
        c.model.num_shared_experts = 4
        c.model.num_levels = 1 if args.model == "cgc" else 2
    c.loss.update(
        cascade="none",
        label_weights=((1.0, 1.0), (1.0, 1.0)),
        loss_weights=(1.0, 1.0),
        export_weights=(0.5, 0.5),
    )
    c.optim.learning_rate = 1e-3
    c.optim.embedding_update = "dense"  # there are no tables
    c.batch_size = 128
    c.eval_batch_size = 10_000
    c.num_epochs = 8
    c.log_every_steps = 250
    c.eval_every_steps = 250
    c.checkpoint_every_steps = 100_000
    if args.runlocal:
        c.data.relatedness.update(num_train=4_000, num_val=1_000, num_test=1_000)
        c.num_epochs = 4
        c.optim.learning_rate = 1e-2  # seconds of training must show learning
        c.log_every_steps = 10
        c.eval_every_steps = 40
    return c
