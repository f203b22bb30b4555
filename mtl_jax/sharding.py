"""Device mesh, shardings for state and batch, and host batch → global array.

Data parallel over the ``data`` axis: the batch is split by rows, the state is replicated.
``config.batch_size`` is the global batch; every process loads ``batch_size / process_count`` rows
and ``to_global`` assembles them into one global array per key.
"""

from __future__ import annotations

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


def state_sharding(abstract_state, mesh):
    """Sharding of every leaf of the (abstract) train state: replicated."""
    return jax.tree.map(lambda _: replicated(mesh), abstract_state)


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
