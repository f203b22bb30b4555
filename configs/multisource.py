"""MMoE with the multi-source "improved loss" (the paper's section 3.6; see
mtl_jax/models/multisource.py).

Per-source feature-space mappings into one shared representation (``shared_dim``), and a source
discriminator trained adversarially through a gradient reversal of weight ``adversarial_weight``
(λ). The synthetic data gets 3 sources with different feature distributions. On single-source
data (``--config.data.synthetic.num_sources=1``, prepared Ali-CCP without a source field) it
trains with the improved loss inert: one mapping for every row, a one-class discriminator whose
loss is 0 (the log says so).
"""

from configs import common


def get_config(arg=None):
    args = common.parse_arg(arg, **common.BASE_ARGS)
    c = common.base_config(args, model="multisource")
    c.model.multisource = True
    set_multisource_options(c, runlocal=args.runlocal)
    return c


def set_multisource_options(c, *, runlocal: bool) -> None:
    c.data.synthetic.num_sources = 3
    c.model.shared_dim = 64 if runlocal else 256
    c.model.mapping_hidden = ()
    c.model.discriminator_hidden = (16,) if runlocal else (64,)
    c.model.adversarial_weight = 0.1
    # "reversal" (DANN) or "confusion": see mtl_jax/models/multisource.py on saturation.
    c.model.adversarial_objective = "reversal"
