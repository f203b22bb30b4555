"""Device mesh, shardings for state and batch, and host batch → global array.

Data parallel over the ``data`` axis: the batch is split by rows, the state is replicated.
``config.batch_size`` is the global batch; every process loads ``batch_size / process_count`` rows
and ``to_global`` assembles them into one global array per key.
"""

from __future__ import annotations

import re

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P


def make_mesh(mesh_cfg) -> jax.sharding.Mesh:
    """A 1-D ``data`` mesh over ``mesh_cfg.data`` devices (-1 = all)."""
    n = jax.device_count()
    data = mesh_cfg.data if mesh_cfg.data != -1 else n
    if data < 1 or n % data != 0 or data > n:
        raise ValueError(
            f"config.mesh.data={mesh_cfg.data}: must be -1 or a divisor of the {n} devices"
        )
    devices = jax.devices()[:data]
    # Auto axes: the step is written for plain data parallelism and lets the compiler propagate
    # the batch sharding; explicit sharding-in-types buys nothing here.
    return jax.make_mesh(
        (data,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
    )


def batch_sharding(mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


# Embedding tables and their per-row optimizer state, split by rows over ``data``: the fused
# tables (params/inputs/tables/dD), lazy-Adam moments (opt_state/embed/dD/m|v), row-wise Adagrad
# accumulators (opt_state/embed/dD/acc) and a dense optimizer's moments of the tables.
EMBEDDING_ROW_RULES = (
    (r"tables/d\d+$", ("data", None)),
    (r"embed/d\d+/(m|v)$", ("data", None)),
    (r"embed/d\d+/acc$", ("data",)),
)


def sharding_rules(mesh_cfg) -> tuple:
    """The configured (regex, partition spec) rules, first match wins.

    ``config.mesh.shard_embeddings`` adds the row rules for embedding tables; ``config.mesh.rules``
    adds custom ones, e.g. ``(("towers/.*kernel$", (None, None, "data")),)``.
    """
    rules = tuple((r, tuple(spec)) for r, spec in mesh_cfg.get("rules", ()))
    if mesh_cfg.get("shard_embeddings", False):
        rules += EMBEDDING_ROW_RULES
    return rules


def state_sharding(abstract_state, mesh, rules=()):
    """Sharding of every leaf of the (abstract) train state.

    A leaf whose path (``params/inputs/tables/d32``, ``opt_state/embed/d32/m``, ...) matches a
    rule's regex gets that rule's partition spec; everything else is replicated. A sharded
    dimension must divide by the mesh axis (the fused tables are padded to a multiple of 1024 rows
    for this).
    """

    def one(path, leaf):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        for pattern, spec in rules:
            if re.search(pattern, name):
                if len(spec) > leaf.ndim:
                    raise ValueError(
                        f"sharding rule {pattern!r} → {spec} has more axes than {name} "
                        f"(shape {leaf.shape})"
                    )
                for dim, axis in zip(leaf.shape, spec):
                    if axis is not None and dim % mesh.shape[axis]:
                        raise ValueError(
                            f"sharding rule {pattern!r}: {name} dimension {dim} does not divide "
                            f"by mesh axis {axis!r} of size {mesh.shape[axis]}"
                        )
                return NamedSharding(mesh, P(*spec))
        return replicated(mesh)

    return jax.tree_util.tree_map_with_path(one, abstract_state)


def check_batch_size(batch_size: int, mesh, what: str = "config.batch_size") -> int:
    """The per-process batch; the global batch must split evenly over devices and processes."""
    n_dev = mesh.devices.size
    if batch_size % n_dev != 0:
        raise ValueError(
            f"{what}={batch_size} must be divisible by the {n_dev} devices of the mesh"
        )
    return batch_size // jax.process_count()


def to_global(host_batch: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
    """This process's rows of each key → one global array sharded by rows over ``data``."""
    sharding = batch_sharding(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in host_batch.items()
    }
