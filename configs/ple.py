"""PLE (Tang et al., RecSys 2020): two CGC extraction levels on the built-in synthetic data.

Each level has per task ``num_specific_experts`` experts plus ``num_shared_experts`` shared ones
(2 per task + 4 shared = 8 per level for click/order; runlocal 1 + 2) with widths ``expert_hidden``;
the inner level's shared gate feeds the next level's shared experts. ``num_experts`` is not read.
"""

from configs import common


def get_config(arg=None):
    args = common.parse_arg(arg, **common.BASE_ARGS)
    c = common.base_config(args, model="ple")
    c.model.num_specific_experts = 1 if args.runlocal else 2
    c.model.num_shared_experts = 2 if args.runlocal else 4
    c.model.num_levels = 2
    return c
