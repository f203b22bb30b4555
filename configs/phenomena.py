"""A paper component on synthetic Ali-CCP with its motivating phenomenon off or on.

    python -m mtl_jax.train --config configs/phenomena.py:model=sequence_mmoe,phenomenon=sequence \
        --workdir runs/seq_on
    python -m mtl_jax.ablate --data-config phenomena --data-args phenomenon=sequence \
        --configs mmoe,sequence_mmoe --seeds 6 --workdir runs/phenomena/sequence

``model=NAME`` takes ``configs/NAME.py`` (its model and loss, the paper's Table 1 sizes) and
``phenomenon=NAME`` sets the generator's knobs (``mtl_jax/data/synthetic.py``, "Phenomena"):

=================  ==============================================================  =============
phenomenon         knobs                                                           for
=================  ==============================================================  =============
none               the default data                                                every "off"
sequence           interest_weight 1.0 (from 0.25), interest_decay_days 1 (from 3)  sequence_mmoe
task_features      task_feature_split 1.0                                          coarse / fine
                                                                                   attention
interactions       interaction_weight 1.0                                          boost_experts,
                                                                                   expert_ and
                                                                                   feature_
                                                                                   attention
sources_aligned    num_sources 3 (the "off" of the improved loss)                  multisource
sources            num_sources 3, source_misalignment 1.0                          multisource
headroom           user_item_weight 1.0 (from 0.25)                                MMoE's gap
=================  ==============================================================  =============

``paper`` trains with the paper's protocol (``configs/common.py``); with ``--data-args paper``
(or ablate's ``--config-args paper``) every run of an ablation does.

Sizes as the 5-seed ablation (``results/synthetic_5seed``): 150,000 training rows (one epoch),
20,000 validation and the default 100,000 test rows per seed, each seed its own data. The values
above were fixed before any model was trained on them.
"""

import importlib

from configs import common

PHENOMENA = {
    "none": {},
    "sequence": dict(interest_weight=1.0, interest_decay_days=1.0),
    "task_features": dict(task_feature_split=1.0),
    "interactions": dict(interaction_weight=1.0),
    "sources_aligned": dict(num_sources=3),
    "sources": dict(num_sources=3, source_misalignment=1.0),
    "headroom": dict(user_item_weight=1.0),
}


def get_config(arg=None):
    args = common.parse_arg(arg, **common.BASE_ARGS, model="mmoe", phenomenon="none")
    if args.phenomenon not in PHENOMENA:
        raise ValueError(
            f"configs/phenomena.py: phenomenon={args.phenomenon!r} is not one of "
            f"{sorted(PHENOMENA)}"
        )
    try:
        model_config = importlib.import_module(f"configs.{args.model}")
    except ModuleNotFoundError:
        raise ValueError(
            f"configs/phenomena.py: model={args.model!r} has no configs/{args.model}.py"
        ) from None
    flags = "".join(f",{name}" for name in ("runlocal", "paper") if args[name])
    c = model_config.get_config(f"seed={args.seed}{flags}")
    if c.data.kind != "synthetic":
        raise ValueError(f"configs/phenomena.py: model={args.model!r} does not use synthetic data")
    knobs = dict(PHENOMENA[args.phenomenon])
    if "num_sources" not in knobs:
        knobs["num_sources"] = c.data.synthetic.num_sources  # multisource's own 3 sources stay
    c.data.synthetic.update(knobs)
    if not args.runlocal:
        c.data.synthetic.update(num_train=150_000, num_val=20_000)
        c.log_every_steps = 50
        c.eval_every_steps = 100_000
        c.checkpoint_every_steps = 100_000
    return c
