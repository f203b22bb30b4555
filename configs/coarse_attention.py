"""MMoE with coarse-grained attention gates (the paper's section 3.1; see mtl_jax/models/paper.py).

Per task a learned query σ(W_g e_g + b_g) [H] scores every expert by an inner product; the softmax
over experts weights them. ``gate_hidden`` adds layers between e_g and W_g (none: the paper's one
[1, 128] layer).
"""

from configs import common


def get_config(arg=None):
    c = common.get_base_config(arg, model="coarse_attention")
    c.model.gate_type = "coarse_attention"
    return c
