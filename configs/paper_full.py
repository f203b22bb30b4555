"""The paper's combined model (Table 2, last row; see mtl_jax/models/paper.py): coarse-grained
attention gates + auto interact layer + sequence feature (DIN) + improved multi-source loss.

The synthetic data gets 3 sources (``configs/multisource.py``); on single-source data
(``--config.data.synthetic.num_sources=1``, or prepared Ali-CCP without a source field) the model
trains with the improved loss inert (one mapping, a one-class discriminator).
"""

from configs import common, multisource, sequence_mmoe
from configs.coarse_attention import set_attention_gate_options


def get_config(arg=None):
    args = common.parse_arg(arg, **common.BASE_ARGS)
    c = common.base_config(args, model="paper_full")
    c.model.gate_type = "coarse_attention"
    set_attention_gate_options(c.model)
    c.model.expert_interaction = "self_attention"
    c.model.interaction_combine = "product"
    c.model.attention_heads = 4
    c.model.use_sequence = True
    c.model.multisource = True
    sequence_mmoe.set_sequence_options(c.model, runlocal=args.runlocal)
    multisource.set_multisource_options(c, runlocal=args.runlocal)
    return c
