"""MMoE with fine-grained attention gates (the paper's section 3.2; see mtl_jax/models/paper.py).

Per task a learned query [E, H]: every hidden unit of the mixed vector has its own weights over the
experts (a softmax per unit, or with ``attention_gate_norm='none'`` the raw per-unit scores). The
model also returns ``fine_gates`` [B, T, E, H].
"""

from configs import common
from configs.coarse_attention import set_attention_gate_options


def get_config(arg=None):
    c = common.get_base_config(arg, model="fine_attention")
    c.model.gate_type = "fine_attention"
    set_attention_gate_options(c.model)
    return c
