"""omoe on the built-in synthetic data with the paper's Table 1 settings (see common.py)."""

from configs import common


def get_config(arg=None):
    return common.get_base_config(arg, model="omoe")
