"""CGC (Tang et al., RecSys 2020; one extraction level) on the built-in synthetic data.

Per task ``num_specific_experts`` experts plus ``num_shared_experts`` shared ones: 2 per task + 4
shared = 8 for click/order, the paper's expert count (Table 1's 8 MMoE experts in common.py);
runlocal uses 1 + 2 (4 in all, as runlocal MMoE). ``num_experts`` is not read.
"""

from configs import common


def get_config(arg=None):
    args = common.parse_arg(arg, **common.BASE_ARGS)
    c = common.base_config(args, model="cgc")
    c.model.num_specific_experts = 1 if args.runlocal else 2
    c.model.num_shared_experts = 2 if args.runlocal else 4
    c.model.num_levels = 1
    return c
