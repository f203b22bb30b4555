"""ESMM (Ma et al., SIGIR 2018): a CTR tower and a CVR tower over shared embeddings.

The network is two independent MLPs (one per task, widths ``expert_hidden`` then ``tower_hidden``)
reading the same embedding lookup; what makes it ESMM is the loss, ``config.loss.cascade =
"product"`` (set by ``configs/esmm.py``): the second logit is P(order | click) (CVR) and it is
trained only through p_ctcvr = p_ctr · p_cvr against the order label on *all* impressions, so the
CVR tower never sees the click-selected sample space alone (no sample selection bias) and borrows
the CTR task's abundant data through the shared embeddings.

Outputs: ``logits`` [B, T] = (ctr logit, cvr logit) for the usual click/order data. Under the
product cascade ``losses.predict`` turns them into ``probs`` = (p_ctr, p_ctcvr) and ``cvr``, so the
evaluation report's labels mean:

  click/*   CTR over all impressions
  order/*   CTCVR = P(click and order) over all impressions (not CVR)
  cvr/*     CVR = P(order | click) on clicked rows

The model does not see the loss config, so it cannot check the cascade itself; with any other
cascade the second head is no longer ESMM's CVR head (``none``: a CTCVR head; ``masked``: a CVR
head trained on clicks only). ``tests/test_zoo.py`` asserts that ``configs/esmm.py`` sets
``product``.
"""

from __future__ import annotations

import jax
from flax import nnx

from mtl_jax.models.embedding import InputLayer
from mtl_jax.models.layers import StackedMLP
from mtl_jax.models.registry import register
from mtl_jax.models.towers import Towers


@register("esmm")
class ESMM(nnx.Module):
    """CTR and CVR towers (one per task) over one shared embedding layer.

    Task 0 is the click (CTR) task and the last task the order task whose head predicts CVR;
    with more than two tasks the middle tasks get their own towers and independent losses.
    """

    def __init__(self, schema, cfg, *, rngs: nnx.Rngs):
        T = schema.num_tasks
        if T < 2:
            raise ValueError(
                f"model 'esmm' needs a click task and an order task; the data has tasks "
                f"{list(schema.tasks)}"
            )
        self.inputs = InputLayer(schema, cfg.embed_dim, rngs=rngs)
        self.bottoms = StackedMLP(
            T,
            self.inputs.flat_dim,
            cfg.expert_hidden,
            activation=cfg.expert_activation,
            dropout=cfg.dropout,
            rngs=rngs,
        )
        self.towers = Towers(
            T,
            self.bottoms.out_features,
            cfg.tower_hidden,
            activation=cfg.tower_activation,
            dropout=cfg.dropout,
            rngs=rngs,
        )

    def __call__(self, batch, *, train: bool, key: jax.Array | None = None):
        x = self.inputs(batch)["flat"]  # [B, I]
        bottom_key = None if key is None else jax.random.fold_in(key, 0)
        tower_key = None if key is None else jax.random.fold_in(key, 1)
        h = self.bottoms(x, train=train, key=bottom_key)  # [B, T, H]
        return {"logits": self.towers(h, train=train, key=tower_key)}  # [B, T]: ctr, cvr
