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

from mtl_jax.models.mlp import MLP
from mtl_jax.models.options import ModelOptions, needs_two_tasks
from mtl_jax.models.registry import register


@register("esmm")
class ESMM(MLP):
    """CTR and CVR towers (one per task) over one shared embedding layer.

    Task 0 is the click (CTR) task and the last task the order task whose head predicts CVR;
    with more than two tasks the middle tasks get their own towers and independent losses.
    """

    @classmethod
    def read_options(cls, cfg, schema) -> ModelOptions:
        opts = ModelOptions.read(cfg)
        needs_two_tasks(schema, "esmm", "needs a click task and an order task")
        return opts
