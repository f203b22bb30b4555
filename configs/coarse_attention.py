"""MMoE with coarse-grained attention gates (the paper's section 3.1; see mtl_jax/models/paper.py).

Per task a learned query σ(W_g e_g + b_g) [H] scores every expert by an inner product; the scores
weigh the experts. ``attention_gate_norm`` chooses how: ``softmax_scaled`` (default: softmax over
experts of the scores / sqrt(H)), ``softmax`` (unscaled) or ``none`` (the raw scores, the paper's
steps 4-6 read literally); see mtl_jax/models/attention_gates.py. ``attention_gate_hidden`` adds
layers between e_g and W_g (none: the paper's one [1, 128] layer).
"""

from configs import common


def get_config(arg=None):
    c = common.get_base_config(arg, model="coarse_attention")
    c.model.gate_type = "coarse_attention"
    set_attention_gate_options(c.model)
    return c


def set_attention_gate_options(model) -> None:
    """The attention gates' keys (coarse and fine), at their defaults."""
    model.attention_gate_hidden = ()
    model.attention_gate_norm = "softmax_scaled"
