"""ESMM (Ma et al., SIGIR 2018) on the built-in synthetic data (shared settings: common.py).

ESMM trains the CVR head through p_ctcvr = p_ctr · p_cvr on all impressions
(``config.loss.cascade = "product"``; the model is only ESMM with that cascade). Reported metrics:
``click/*`` is CTR, ``order/*`` is CTCVR = P(click and order) over all impressions, and ``cvr/*`` is
CVR = P(order | click) on clicked rows. Under ``:paper`` (``configs/common.py``) ESMM keeps its
product cascade, the structure the paper's ESMM baseline stands for, and takes the rest of the
paper's protocol (weights, 5 epochs).
"""

from configs import common


def get_config(arg=None):
    c = common.get_base_config(arg, model="esmm")
    c.loss.cascade = "product"
    return c
