"""Sequence MMoE (the paper's section 3.5; see mtl_jax/models/din.py).

DIN target attention over the behaviour sequence, every item with a time embedding (features of
the days since the behaviour, projected to ``time_embedding_dim``) and a location embedding
(``location_embedding_dim``); the pooled interest joins the expert and gate inputs.
"""

from configs import common


def get_config(arg=None):
    args = common.parse_arg(arg, **common.BASE_ARGS)
    c = common.base_config(args, model="sequence_mmoe")
    c.model.use_sequence = True
    set_sequence_options(c.model, runlocal=args.runlocal)
    return c


def set_sequence_options(model, *, runlocal: bool) -> None:
    """DIN options: activation unit 36 → 1 (sigmoid, as in DIN's code), time/space embeddings,
    days per unit of t (runlocal: smaller); softmax-normalised weights (``din_weight_norm='none'``:
    DIN's paper, the raw scores) and stabilised time features (``time_features='literal'``: the
    paper's list read literally); see mtl_jax/models/din.py."""
    model.time_embedding_dim = 4 if runlocal else 8
    model.location_embedding_dim = 4 if runlocal else 8
    model.time_scale = 7.0
    model.din_hidden = (16,) if runlocal else (36,)
    model.din_activation = "sigmoid"
    model.din_weight_norm = "softmax"
    model.time_features = "stabilised"
