"""MMoE with feature-level self-attention (the paper's section 3.4; see
mtl_jax/models/feature_attention.py).

One AutoInt interacting layer over the field embeddings before the experts. ``attention_heads``
must divide ``embed_dim``; every field needs the same embedding width.
"""

from configs import common


def get_config(arg=None):
    args = common.parse_arg(arg, **common.BASE_ARGS)
    c = common.base_config(args, model="feature_attention")
    c.model.feature_attention = True
    c.model.attention_heads = 2 if args.runlocal else 4
    return c
