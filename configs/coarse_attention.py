"""MMoE with coarse-grained attention gates (the paper's section 3.1; see mtl_jax/models/paper.py).

Per task a learned query σ(W_g e_g + b_g) [H] scores every expert by an inner product; the scores
weigh the experts. ``attention_gate_norm`` chooses how: ``none`` (this config's default: the raw
scores, the paper's steps 4-6 read literally), ``softmax_scaled`` (softmax over experts of the
scores / sqrt(H)) or ``softmax`` (unscaled); see mtl_jax/models/attention_gates.py. The default was
chosen by measurement (README, "The paper's protocol and the literal readings";
results/literal_options): on the default synthetic data, 6 seeds, ``none`` has the higher
validation order AUC than ``softmax_scaled`` on every seed (+0.0066, p 0.031) and the same click
AUC. ``fine_attention`` and ``paper_full`` keep ``softmax_scaled`` (fine: ``none`` measured worse;
paper_full: not measured). ``attention_gate_hidden`` adds
layers between e_g and W_g (none: the paper's one [1, 128] layer).
"""

from configs import common


def get_config(arg=None):
    c = common.get_base_config(arg, model="coarse_attention")
    c.model.gate_type = "coarse_attention"
    set_attention_gate_options(c.model, norm="none")
    return c


def set_attention_gate_options(model, norm: str = "softmax_scaled") -> None:
    """The attention gates' keys (coarse and fine): no layers before W_g, and ``norm``."""
    model.attention_gate_hidden = ()
    model.attention_gate_norm = norm
