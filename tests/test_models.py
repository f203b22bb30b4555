"""Module shapes, gate normalisation, the einsum expert bank, Dice statistics, fused embeddings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import model_config, tiny_batch, tiny_schema

from mtl_jax.models import build_model, model_names
from mtl_jax.models.embedding import InputLayer
from mtl_jax.models.experts import ExpertBank
from mtl_jax.models.layers import Dice, StackedMLP

CORE = ["mlp", "shared_bottom", "omoe", "mmoe"]


@pytest.mark.parametrize("name", CORE)
def test_model_output_shapes(name):
    schema = tiny_schema()
    model = build_model(schema, model_config(name), seed=0)
    out = model(tiny_batch(schema, 16), train=False)
    assert out["logits"].shape == (16, 2)
    assert np.all(np.isfinite(out["logits"]))
    if name in ("omoe", "mmoe"):
        assert out["gates"].shape == (16, 2, 3)


@pytest.mark.parametrize("name", ["omoe", "mmoe"])
def test_gates_sum_to_one(name):
    schema = tiny_schema()
    model = build_model(schema, model_config(name, gate_hidden=(5,)), seed=1)
    gates = model(tiny_batch(schema, 32), train=True)["gates"]
    np.testing.assert_allclose(np.asarray(gates).sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.asarray(gates) >= 0)


def test_omoe_gate_shared_mmoe_gates_differ():
    schema = tiny_schema()
    batch = tiny_batch(schema, 8)
    g_o = np.asarray(build_model(schema, model_config("omoe"), seed=0)(batch, train=False)["gates"])
    np.testing.assert_allclose(g_o[:, 0], g_o[:, 1])
    g_m = np.asarray(build_model(schema, model_config("mmoe"), seed=0)(batch, train=False)["gates"])
    assert not np.allclose(g_m[:, 0], g_m[:, 1])


def test_expert_bank_equals_per_expert_reference():
    bank = ExpertBank(4, 10, (7, 5), rngs=nnx.Rngs(params=0))
    x = jax.random.normal(jax.random.key(1), (6, 10))
    out = np.asarray(bank(x, train=False))  # [B, E, H]
    for e in range(4):
        h = x
        for layer in bank.mlp.layers:
            h = jax.nn.relu(h @ layer.kernel[...][e] + layer.bias[...][e])
        np.testing.assert_allclose(out[:, e], np.asarray(h), rtol=1e-5, atol=1e-6)


def test_stacked_mlp_accepts_per_stack_inputs():
    mlp = StackedMLP(3, 4, (5,), rngs=nnx.Rngs(params=0))
    x = jax.random.normal(jax.random.key(0), (2, 3, 4))
    out = mlp(x, train=False)
    ref = jax.nn.relu(
        jnp.einsum("bsi,sio->bso", x, mlp.layers[0].kernel[...]) + mlp.layers[0].bias[...]
    )
    np.testing.assert_allclose(out, ref, rtol=1e-6)


def test_dice_updates_statistics_only_in_training():
    dice = Dice(1, 3)
    x = jax.random.normal(jax.random.key(0), (64, 1, 3)) * 2 + 5
    before = np.asarray(dice.mean[...]).copy()
    dice(x, train=False)
    np.testing.assert_array_equal(dice.mean[...], before)
    dice(x, train=True)
    assert np.all(np.asarray(dice.mean[...]) > before)  # moved towards the batch mean (≈5)
    # Bias-corrected: after one step evaluation normalises with that batch's statistics.
    xf = np.asarray(x)
    p = 1 / (1 + np.exp(-(xf - xf.mean(0)) / np.sqrt(xf.var(0) + 1e-8)))
    np.testing.assert_allclose(dice(x, train=False), p * xf, rtol=1e-4, atol=1e-5)


def test_fused_embedding_matches_per_field_lookup():
    schema = tiny_schema()
    layer = InputLayer(schema, 8, use_sequence=True, rngs=nnx.Rngs(params=0))
    batch = tiny_batch(schema, 5)
    out = layer(batch)
    (table,) = layer.tables.values()
    offsets = {"user": 0, "item": 50, "cat": 90, "pos": 97}
    for i, f in enumerate(schema.categorical):
        ref = np.asarray(table[...])[batch["cat"][:, i] + offsets[f.name]]
        np.testing.assert_allclose(out["fields"][:, i], ref)
    # The sequence shares the item table: same id → same vector as the target field.
    ref_seq = np.asarray(table[...])[batch["seq_item"] + offsets["item"]]
    np.testing.assert_allclose(out["seq"], ref_seq)
    assert out["flat"].shape == (5, 4 * 8 + 2)
    np.testing.assert_array_equal(out["seq_mask"], batch["seq_item"] > 0)


def test_mixed_embedding_widths_get_one_table_per_width():
    from mtl_jax.data.schema import CategoricalFeature, Schema

    schema = Schema(
        categorical=(
            CategoricalFeature("a", 10, embed_dim=4),
            CategoricalFeature("b", 6),
            CategoricalFeature("c", 10, table="a", embed_dim=4),
        )
    )
    layer = InputLayer(schema, 8, rngs=nnx.Rngs(params=0))
    assert sorted(layer.tables.keys()) == ["d4", "d8"]
    out = layer({"cat": np.array([[1, 2, 1]], np.int32), "dense": np.zeros((1, 0), np.float32)})
    assert out["flat"].shape == (1, 4 + 8 + 4)
    np.testing.assert_allclose(out["flat"][0, :4], out["flat"][0, 12:16])  # shared table a/c
    assert "fields" not in out


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="valid names") as e:
        build_model(tiny_schema(), model_config("nope"), seed=0)
    for name in CORE:
        assert name in str(e.value)
    assert set(CORE) <= set(model_names())
