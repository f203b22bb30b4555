"""AITM (Xi et al., KDD 2021) on the built-in synthetic data (shared settings: common.py).

Each head predicts its label over all impressions (``config.loss.cascade = "none"``), so
``order/*`` is P(click and order); the behavioural-expectation calibrator
λ · mean(max(p_order − p_click, 0)) is added to the loss with λ =
``config.model.aitm_constraint_weight`` (0.6, the paper's value). ``:paper``
(``configs/common.py``) changes its weights and epochs only: it already learns each label over
all impressions.
"""

from configs import common


def get_config(arg=None):
    c = common.get_base_config(arg, model="aitm")
    c.loss.cascade = "none"
    c.model.aitm_constraint_weight = 0.6
    return c
