"""MMoE with gradient-boosting experts (the paper's section 3.3; see
mtl_jax/models/boost_experts.py).

Expert i reads the input joined with expert i−1's output (the first reads the input alone);
MMoE's softmax gates mix them. Expert activations: relu, prelu or none.
"""

from configs import common


def get_config(arg=None):
    c = common.get_base_config(arg, model="boost_experts")
    c.model.expert_mode = "boost"
    return c
