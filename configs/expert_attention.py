"""MMoE with the auto interact layer (the paper's section 3.4; see
mtl_jax/models/expert_attention.py).

Multi-head self-attention over the E expert outputs; the result is multiplied element-wise with the
experts (``interaction_combine='product'``, the paper's; ``'residual'`` adds instead) before the
softmax gates. ``attention_heads`` must divide ``expert_hidden[-1]``.
"""

from configs import common


def get_config(arg=None):
    c = common.get_base_config(arg, model="expert_attention")
    c.model.expert_interaction = "self_attention"
    c.model.interaction_combine = "product"
    c.model.attention_heads = 4
    return c
