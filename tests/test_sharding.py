"""Row-sharded embedding tables: same training as replicated ones, and really split by rows."""

import chex
import jax
import numpy as np
import pytest

from configs import common
from mtl_jax import loop, sharding
from mtl_jax.data import loading, pipeline
from mtl_jax.state import create_train_state, init_model, layout


def _train(shard: bool, num_steps: int = 6):
    config = common.get_base_config("runlocal")
    config.mesh.shard_embeddings = shard
    schema, splits = loading.load(config.data)
    mesh, graphdef, tx, _, state_sh = layout(config, schema, num_steps)
    state = jax.jit(
        lambda: create_train_state(*init_model(schema, config.model, config.seed)[1:], tx),
        out_shardings=state_sh,
    )()
    step = loop.jit_train_step(graphdef, tx, config, state_sh, sharding.batch_sharding(mesh))
    it = iter(
        pipeline.train_batches(
            loading.model_inputs(splits["train"]),
            batch_size=config.batch_size,
            num_steps=num_steps,
            seed=0,
            prefetch=0,
        )
    )
    losses = []
    for _ in range(num_steps):
        state, m = step(state, sharding.to_global(next(it), mesh))
        losses.append(float(m["loss"]))
    return state, losses, step


def test_row_sharded_tables_train_like_replicated_ones():
    assert jax.device_count() == 4
    rep, rep_losses, _ = _train(False)
    shd, shd_losses, _ = _train(True)
    np.testing.assert_allclose(rep_losses, shd_losses, rtol=1e-5)
    chex.assert_trees_all_close(
        jax.device_get(rep.params), jax.device_get(shd.params), rtol=1e-5, atol=1e-7
    )
    (key,) = shd.params["inputs"]["tables"].keys()
    table = shd.params["inputs"]["tables"][key]
    rows = table.shape[0]
    shard_rows = {s.data.shape[0] for s in table.addressable_shards}
    assert shard_rows == {rows // 4}
    m = shd.opt_state["embed"][key]["m"]
    assert {s.data.shape[0] for s in m.addressable_shards} == {rows // 4}


def test_row_sharded_step_never_assembles_a_whole_table():
    state, _, step = _train(True, num_steps=1)
    (key,) = state.params["inputs"]["tables"].keys()
    rows, dim = state.params["inputs"]["tables"][key].shape
    config = common.get_base_config("runlocal")
    schema, splits = loading.load(config.data)
    mesh = sharding.make_mesh(config.mesh)
    batch = next(iter(pipeline.eval_batches(loading.model_inputs(splits["train"]), batch_size=256)))
    batch.pop("valid")
    hlo = step.lower(state, sharding.to_global(batch, mesh)).compile().as_text()
    # No collective produces a full [rows, dim] table: gathers and updates stay on local rows.
    for line in hlo.splitlines():
        if "all-gather" in line or "all-to-all" in line:
            assert f"[{rows},{dim}]" not in line, line


def test_sharding_rules_check_divisibility():
    config = common.get_base_config("runlocal")
    mesh = sharding.make_mesh(config.mesh)
    abstract = {"params": {"w": jax.ShapeDtypeStruct((10, 3), np.float32)}}
    with pytest.raises(ValueError, match="does not divide by mesh axis 'data'"):
        sharding.state_sharding(abstract, mesh, ((r"w$", ("data", None)),))
    sh = sharding.state_sharding(abstract, mesh, ((r"w$", (None, None)),))
    assert sh["params"]["w"].spec == jax.sharding.PartitionSpec(None, None)
