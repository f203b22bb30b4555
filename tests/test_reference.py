"""Every formula of the models re-derived in plain numpy (float64) from the modules' parameters.

Each reference reads the parameters (and batch statistics) of the module under test and computes
the formula from the paper it implements, without calling any of the module's own pieces; the
module's output must match it. Plus the paper's Table 1 defaults and its ``:paper`` protocol.
"""

import dataclasses
import importlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from helpers import model_config, tiny_batch, tiny_schema

from configs import common
from mtl_jax import eval_report, steps
from mtl_jax.models import build_model
from mtl_jax.models.attention_gates import CoarseAttentionGates, FineAttentionGates
from mtl_jax.models.feature_attention import FeatureAttentionLayer
from mtl_jax.models.layers import Dice
from mtl_jax.models.multisource import SourceDiscriminator
from mtl_jax.state import init_model

TOL = dict(rtol=2e-4, atol=2e-5)


# ----------------------------------------------------------------------------- numpy pieces


def tree(module) -> dict:
    """Every variable of ``module`` (params and batch statistics) as float64 numpy arrays."""
    pure = nnx.to_pure_dict(nnx.state(module))
    return jax.tree.map(lambda a: np.asarray(a, np.float64), pure)


def layers(d: dict, key: str = "layers") -> list[dict]:
    """The entries of ``d[key]``, an ``nnx.List`` state (keys 0, 1, ...), in order; none when an
    empty list left no state."""
    items = d.get(key, {})
    return [items[k] for k in sorted(items, key=int)]


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


def relu(x):
    return np.maximum(x, 0.0)


def softmax(x, axis=-1):
    z = np.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def stacked_linear(x, p):
    """S linear maps: ``x`` [B, I] (shared) or [B, S, I] → [B, S, O]."""
    if x.ndim == 2:
        return np.einsum("bi,sio->bso", x, p["kernel"]) + p["bias"]
    return np.einsum("bsi,sio->bso", x, p["kernel"]) + p["bias"]


def dice_eval(x, act, momentum=0.9, eps=1e-8):
    """Dice at evaluation: ``p x + (1 − p) α x``, p = σ((x − E[x]) / sqrt(Var[x] + ε)) with the
    bias-corrected running statistics (0 and 1 before any training step)."""
    count = act["count"]
    if count > 0:
        debias = 1.0 - momentum**count
        mean, var = act["mean"] / debias, act["var"] / debias
    else:
        mean, var = np.zeros_like(act["mean"]), np.ones_like(act["var"])
    p = sigmoid((x - mean) / np.sqrt(var + eps))
    return p * x + (1.0 - p) * act["alpha"] * x


def mlp(x, p, activation):
    """A stacked MLP: every layer followed by ``activation`` (relu, or dice at evaluation)."""
    acts = layers(p, "acts")
    for i, layer in enumerate(layers(p)):
        x = stacked_linear(x, layer)
        x = dice_eval(x, acts[i]) if activation == "dice" else relu(x)
    return x


def towers(mixed, p):
    """Per task a Dice MLP and a logit: [B, T, H] → [B, T]."""
    return stacked_linear(mlp(mixed, p["mlp"], "dice"), p["head"]["linear"])[..., 0]


def embed(batch, schema, tables):
    """The input layer re-derived: each field's row is its id plus the summed sizes of the tables
    before its own (in ``schema.tables()`` order); fields then dense features, concatenated."""
    offsets, cursor = {}, 0
    for name, size in schema.tables().items():
        offsets[name], cursor = cursor, cursor + size
    table = tables["d8"]
    fields = [
        table[batch["cat"][:, i] + offsets[f.table_name]] for i, f in enumerate(schema.categorical)
    ]
    out = {"flat": np.concatenate(fields + [batch["dense"].astype(np.float64)], axis=-1)}
    if schema.sequence is not None:
        out["seq"] = table[batch["seq_item"] + offsets[schema.sequence.table]]
        out["target"] = fields[schema.field_index(schema.sequence.target)]
    return out


def time_features(t, kind, time_scale):
    """Section 3.5's six operations on t = days / time_scale (din.py's two readings)."""
    t = np.maximum(t, 0.0) / time_scale
    if kind == "stabilised":
        exp, log = np.exp(-t), np.log1p(t)
    else:  # exp(t) capped at t = 30, log t floored at one minute
        exp, log = np.exp(np.minimum(t, 30.0)), np.log(np.maximum(t, 1 / 1440 / time_scale))
    return np.stack([exp, np.sin(t), np.cos(t), np.sqrt(t), t**2, log], axis=-1)


def din_interest(p, seq, mask, target, days, loc, *, kind, time_scale, norm, activation):
    """DIN with time and space embeddings: keys [item, time, location], the activation unit over
    [q, k, q − k, q ⊙ k], weights (softmax over real items, or raw scores), Σ_j w_j k_j."""
    days = np.where(mask, days, 0.0)
    loc = np.where(mask, loc, 0)
    proj = p["time"]["proj"]

    def time_embedding(d):
        return time_features(d, kind, time_scale) @ proj["kernel"][0] + proj["bias"][0]

    table = p["locations"]["embedding"]
    keys = np.concatenate([seq, time_embedding(days), table[loc]], axis=-1)  # [B, L, D']
    B, L, _ = keys.shape
    query = np.concatenate(
        [target, time_embedding(np.zeros(B)), np.broadcast_to(table[0], (B, table.shape[1]))], -1
    )
    q = np.broadcast_to(query[:, None], keys.shape)
    h = np.concatenate([q, keys, q - keys, q * keys], axis=-1)  # [B, L, 4 D']
    unit = p["unit"]
    acts = layers(unit, "acts")
    for i, layer in enumerate(layers(unit)):
        h = h @ layer["kernel"][0] + layer["bias"][0]
        if activation == "sigmoid":
            h = sigmoid(h)
        else:  # prelu
            h = np.where(h > 0, h, acts[i]["alpha"][0] * h)
    scores = (h @ unit["head"])[..., 0] + (unit["head_bias"][0] if "head_bias" in unit else 0.0)
    if norm == "softmax":  # over the real items; a row without any pools nothing
        z = np.where(
            mask, np.exp(scores - np.where(mask, scores, -np.inf).max(-1, keepdims=True)), 0
        )
        weights = z / np.maximum(z.sum(-1, keepdims=True), 1e-300)
    else:
        weights = np.where(mask, scores, 0.0)
    return np.einsum("bl,bld->bd", weights, keys), weights


def gate_queries(p):
    """σ(W_g · MLP(e_g) + b_g) per stack (eq. 7), from the learned gate vectors e_g."""
    h = p["init_query"]  # [S, H]
    for layer in layers(p.get("hidden", {})):
        h = relu(np.einsum("si,sio->so", h, layer["kernel"]) + layer["bias"])
    return sigmoid(np.einsum("si,sio->so", h, p["out"]["kernel"]) + p["out"]["bias"])


def attention_heads(x, wq, wk, wv):
    """Key-value attention over tokens (AutoInt, eqs. 10-11), heads concatenated: [B, S, N·K]."""
    outs, atts = [], []
    for h in range(wq.shape[1]):
        q, k, v = x @ wq[:, h], x @ wk[:, h], x @ wv[:, h]
        a = softmax(q @ np.swapaxes(k, 1, 2) / np.sqrt(wq.shape[2]), axis=-1)  # [B, S, S]
        outs.append(a @ v)
        atts.append(a)
    return np.concatenate(outs, axis=-1), np.stack(atts, axis=1)


# ----------------------------------------------------------------------------- MMoE, eqs. 1-2


def test_mmoe_gates_and_mixing_match_eqs_1_and_2():
    # g_k(x) = softmax(W_gk x + b_gk) (eq. 2; ours has a bias), f_k(x) = Σ_i g_k(x)_i f_i(x)
    # (eq. 1) into task k's tower. After one training call, so Dice's running statistics are set.
    schema = tiny_schema(sequence=False)
    model = build_model(schema, model_config("mmoe"), seed=2)
    batch = tiny_batch(schema, 24, seed=1)
    model(batch, train=True)
    out = model(batch, train=False)
    p = tree(model)
    x = embed(batch, schema, p["inputs"]["tables"])["flat"]
    experts = mlp(x, p["experts"]["mlp"], "relu")  # [B, E, H]: f_i(x)
    gates = softmax(stacked_linear(x, p["gates"]["out"]), axis=-1)  # [B, T, E]: g_k(x)
    np.testing.assert_allclose(out["gates"], gates, **TOL)
    np.testing.assert_allclose(gates.sum(-1), 1.0)
    mixed = np.einsum("bke,beh->bkh", gates, experts)  # f_k(x)
    np.testing.assert_allclose(out["logits"], towers(mixed, p["towers"]), **TOL)


def test_mmoe_gate_with_hidden_layers():
    # Section 2.1.2: the gate is a network ("hidden_1 * hidden_2") before the softmax.
    schema = tiny_schema(sequence=False)
    model = build_model(schema, model_config("mmoe", gate_hidden=(5, 4)), seed=3)
    batch = tiny_batch(schema, 8, seed=2)
    p = tree(model)
    x = embed(batch, schema, p["inputs"]["tables"])["flat"]
    h = mlp(x, p["gates"]["hidden"], "relu")  # [B, T, 4]
    gates = softmax(stacked_linear(h, p["gates"]["out"]), axis=-1)
    np.testing.assert_allclose(model(batch, train=False)["gates"], gates, **TOL)


# ----------------------------------------------------------------------------- attention gates


def _experts(signed: bool):
    x = jax.random.uniform(jax.random.key(5), (6, 3, 12))  # [B, E, H], ≥ 0 as after ReLU
    return x - 0.5 if signed else x


@pytest.mark.parametrize("norm", ["softmax_scaled", "softmax", "none"])
@pytest.mark.parametrize("signed", [False, True])
def test_coarse_attention_gate(norm, signed):
    # Section 3.1: a_e = ⟨σ(W_g MLP(e_g) + b_g), expert_e⟩ (steps 3-4), weights w (softmax over
    # experts of a / sqrt(H), of a, or a itself: the literal steps 5-6), mixed = Σ_e w_e expert_e.
    gate = CoarseAttentionGates(2, 3, 12, (5,), norm=norm, rngs=nnx.Rngs(params=7))
    experts = _experts(signed)
    mixed, gates = gate(experts)
    x = np.asarray(experts, np.float64)
    q = gate_queries(tree(gate)["queries"])  # [T, H]
    a = np.einsum("beh,th->bte", x, q)  # [B, T, E]
    if norm == "none":
        w = a
        want_gates = np.abs(a) / np.abs(a).sum(-1, keepdims=True)
    else:
        w = want_gates = softmax(a / np.sqrt(12) if norm == "softmax_scaled" else a)
    np.testing.assert_allclose(mixed, np.einsum("bte,beh->bth", w, x), **TOL)
    np.testing.assert_allclose(gates, want_gates, **TOL)


@pytest.mark.parametrize("norm", ["softmax_scaled", "softmax", "none"])
def test_fine_attention_gate(norm):
    # Section 3.2: a query [E, H] per task from its own query network per (task, expert),
    # a_eh = q[e, h] · expert_e[h], weights per hidden unit (softmax over experts, or a itself),
    # mixed[h] = Σ_e w_eh expert_e[h].
    gate = FineAttentionGates(2, 3, 12, (4,), norm=norm, rngs=nnx.Rngs(params=8))
    experts = _experts(signed=True)
    mixed, gates, fine = gate(experts)
    x = np.asarray(experts, np.float64)
    q = gate_queries(tree(gate)["queries"]).reshape(2, 3, 12)  # task-major stacks: [T, E, H]
    a = x[:, None] * q[None]  # [B, T, E, H]
    if norm == "none":
        w = a
        want_fine = np.abs(a) / np.abs(a).sum(2, keepdims=True)
    else:
        w = want_fine = softmax(a, axis=2)
    np.testing.assert_allclose(mixed, np.einsum("bteh,beh->bth", w, x), **TOL)
    np.testing.assert_allclose(fine, want_fine, **TOL)
    np.testing.assert_allclose(gates, want_fine.mean(-1), **TOL)


# ----------------------------------------------------------------------------- DIN (section 3.5)


@pytest.mark.parametrize(
    "norm,kind,activation,time_scale",
    [
        ("softmax", "stabilised", "sigmoid", 7.0),
        ("none", "stabilised", "prelu", 7.0),
        ("softmax", "literal", "sigmoid", 1.0),
        ("none", "literal", "sigmoid", 2.0),
    ],
)
def test_din_activation_unit_and_pooled_interest(norm, kind, activation, time_scale):
    schema = tiny_schema()
    cfg = model_config(
        "sequence_mmoe",
        din_weight_norm=norm,
        time_features=kind,
        din_activation=activation,
        time_scale=time_scale,
        time_embedding_dim=3,
        location_embedding_dim=2,
        din_hidden=(7, 5),
    )
    model = build_model(schema, cfg, seed=6)
    if "head_bias" in tree(model.din)["unit"]:  # a non-zero bias, so that it is checked
        model.din.unit.head_bias[...] = jnp.array([0.3])
    rng = np.random.default_rng(0)
    B, L, D = 7, 5, 8
    mask = rng.random((B, L)) < 0.6
    mask[0] = False  # a row without behaviours
    mask[1, 0] = True
    inp = {
        "seq": rng.normal(size=(B, L, D)).astype(np.float32),
        "seq_mask": mask,
        "target": rng.normal(size=(B, D)).astype(np.float32),
        "seq_days": (rng.random((B, L)) * 14).astype(np.float32),
        "seq_loc": rng.integers(0, 4, (B, L)).astype(np.int32),
    }
    inp["seq_days"][1, 0] = 0.0  # a same-day behaviour: log t's floor
    interest, weights = model.din(inp, train=False)
    want_interest, want_weights = din_interest(
        tree(model.din),
        np.asarray(inp["seq"], np.float64),
        mask,
        np.asarray(inp["target"], np.float64),
        np.asarray(inp["seq_days"], np.float64),
        inp["seq_loc"],
        kind=kind,
        time_scale=time_scale,
        norm=norm,
        activation=activation,
    )
    np.testing.assert_allclose(weights, want_weights, **TOL)
    np.testing.assert_allclose(interest, want_interest, rtol=2e-4, atol=2e-4)
    assert np.all(np.asarray(interest)[0] == 0.0)


# ----------------------------------------------------------------------------- Dice, AutoInt, D


@pytest.mark.parametrize("batch_axis", [0, 1])
def test_dice_in_training_mode(batch_axis):
    # DIN's Dice: p = σ((x − E[x]) / sqrt(Var[x] + ε)) over the batch, f(x) = p x + (1 − p) α x,
    # with α ≠ 0; the running statistics move by 0.1 towards the batch's (momentum 0.9), and
    # evaluation right after uses them bias-corrected: here the batch's own.
    dice = Dice(2, 5)
    alpha = np.asarray(jax.random.normal(jax.random.key(0), (2, 5)))
    dice.alpha[...] = jnp.asarray(alpha)
    x = np.asarray(jax.random.normal(jax.random.key(1), (32, 2, 5)) * 2 + 0.7, np.float64)
    xin = x if batch_axis == 0 else np.swapaxes(x, 0, 1)
    out = np.asarray(dice(jnp.asarray(xin, jnp.float32), train=True, batch_axis=batch_axis))
    mean, var = x.mean(0), x.var(0)
    p = sigmoid((x - mean) / np.sqrt(var + 1e-8))
    want = p * x + (1 - p) * alpha * x
    np.testing.assert_allclose(out if batch_axis == 0 else np.swapaxes(out, 0, 1), want, **TOL)
    np.testing.assert_allclose(dice.mean[...], 0.1 * mean, **TOL)
    np.testing.assert_allclose(dice.var[...], 0.1 * var, **TOL)
    assert float(dice.count[...]) == 1.0
    evaluated = np.asarray(dice(jnp.asarray(xin, jnp.float32), train=False, batch_axis=batch_axis))
    np.testing.assert_allclose(evaluated, out, **TOL)


def test_feature_self_attention_values():
    # AutoInt's interacting layer over the fields: relu(concat_h Σ_k α^(h)_{m,k} W_v e_k + W_res e)
    # with α^(h) = softmax_k ⟨W_q e_m, W_k e_k⟩ / sqrt(d_head).
    layer = FeatureAttentionLayer(8, 2, rngs=nnx.Rngs(params=3))
    fields = jax.random.normal(jax.random.key(2), (5, 4, 8))  # [B, F, D]
    out, attention = layer(fields)
    p = tree(layer)
    e = np.asarray(fields, np.float64)
    att = p["attention"]
    heads, want_att = attention_heads(e, att["w_query"], att["w_key"], att["w_value"])
    np.testing.assert_allclose(attention, want_att, **TOL)
    np.testing.assert_allclose(out, relu(heads + e @ p["residual"]), **TOL)


@pytest.mark.parametrize("objective", ["reversal", "confusion"])
def test_discriminator_cross_entropy_and_accuracy(objective):
    # D's mean cross-entropy −log softmax(D(h))[source] and accuracy over the valid rows; under
    # "confusion" the loss adds λ · mean(−mean_s log softmax(D(h))_s) (CE against uniform).
    lam = 0.3
    disc = SourceDiscriminator(
        3, 6, (5,), adversarial_weight=lam, objective=objective, rngs=nnx.Rngs(params=4)
    )
    h = jax.random.normal(jax.random.key(3), (10, 6))
    source = jnp.asarray([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
    valid = jnp.asarray([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], jnp.float32)
    loss, metrics = disc(h, source, train=False, valid=valid)
    p = tree(disc)
    logits = stacked_linear(mlp(np.asarray(h, np.float64), p["hidden"], "relu"), p["out"])[:, 0]
    logp = log_softmax(logits)
    v = np.asarray(valid, bool)
    src = np.asarray(source)
    ce = -logp[np.arange(10), src][v].mean()
    accuracy = (logits.argmax(-1) == src)[v].mean()
    assert 0 < accuracy < 1  # the check can tell a wrong argmax from a right one
    np.testing.assert_allclose(metrics["disc_loss"], ce, **TOL)
    np.testing.assert_allclose(metrics["disc_accuracy"], accuracy, **TOL)
    want = ce if objective == "reversal" else ce + lam * (-logp.mean(-1))[v].mean()
    np.testing.assert_allclose(loss, want, **TOL)


# ----------------------------------------------------------------------------- paper_full


def test_paper_full_data_flow_order():
    # Table 2's last row in the order of paper.py's diagram: input layer → DIN interest joined to
    # the flat input → the row's own source mapping → experts → auto interact layer (product) →
    # coarse attention gates → Dice towers. Every piece re-derived, composed in that order.
    schema = dataclasses.replace(tiny_schema(), num_sources=3)
    cfg = model_config(
        "paper_full",
        attention_heads=2,
        shared_dim=6,
        discriminator_hidden=(5,),
        time_embedding_dim=3,
        location_embedding_dim=2,
        din_hidden=(7,),
    )
    model = build_model(schema, cfg, seed=9)
    batch = tiny_batch(schema, 20, seed=4)
    batch["source"] = (np.arange(20) % 3).astype(np.int32)
    model(batch, train=True)  # Dice statistics
    out = model(batch, train=False)
    p = tree(model)
    inp = embed(batch, schema, p["inputs"]["tables"])
    mask = batch["seq_item"] > 0
    interest, _ = din_interest(
        p["din"],
        inp["seq"],
        mask,
        inp["target"],
        batch["seq_days"].astype(np.float64),
        batch["seq_loc"],
        kind="stabilised",
        time_scale=7.0,
        norm="softmax",
        activation="sigmoid",
    )
    x = np.concatenate([inp["flat"], interest], axis=-1)
    every = stacked_linear(x, p["mapping"]["out"])  # [B, S, shared]
    shared = every[np.arange(20), batch["source"]]
    experts = mlp(shared, p["experts"]["mlp"], "relu")  # [B, E, H]
    att = p["interaction"]["attention"]
    interacted, _ = attention_heads(experts, att["w_query"], att["w_key"], att["w_value"])
    experts = experts * interacted
    q = gate_queries(p["gates"]["queries"])
    gates = softmax(np.einsum("beh,th->bte", experts, q) / np.sqrt(experts.shape[-1]))
    mixed = np.einsum("bte,beh->bth", gates, experts)
    np.testing.assert_allclose(out["gates"], gates, **TOL)
    np.testing.assert_allclose(out["logits"], towers(mixed, p["towers"]), rtol=1e-3, atol=1e-4)
    d = p["discriminator"]
    logp = log_softmax(stacked_linear(mlp(shared, d["hidden"], "relu"), d["out"])[:, 0])
    ce = -logp[np.arange(20), batch["source"]].mean()
    np.testing.assert_allclose(out["aux_loss"], ce, **TOL)


# ----------------------------------------------------------------------------- CLICK@N / ORDER@N


def test_eval_step_scores_with_the_export_weights():
    schema = tiny_schema(sequence=False)
    config = ml_collections.ConfigDict(
        dict(
            loss=dict(cascade="none", export_weights=(0.8, 0.2)),
            compute_dtype="float32",
        )
    )
    graphdef, params, model_state = init_model(schema, model_config("mmoe"), seed=0)
    batch = {k: v for k, v in tiny_batch(schema, 16).items() if k not in ("user",)}
    pred = steps.eval_step(params, model_state, batch, graphdef=graphdef, config=config)
    probs = np.asarray(pred["probs"], np.float64)
    np.testing.assert_allclose(pred["score"], probs @ np.array([0.8, 0.2]), **TOL)


def _hit_rate(labels, score, users, n):
    """Per user with ≥ n rows: the share of its n best-scored rows with label 1; the mean."""
    shares = []
    for u in np.unique(users):
        rows = np.flatnonzero(users == u)
        if len(rows) < n:
            continue
        top = rows[np.argsort(-score[rows], kind="stable")[:n]]
        shares.append(labels[top].astype(np.float64).mean())
    return float(np.mean(shares))


def test_report_ranks_click_at_n_and_order_at_n_by_the_export_weighted_score():
    rng = np.random.default_rng(0)
    n_rows, w = 600, np.array([0.8, 0.2])
    users = rng.integers(0, 60, n_rows)
    probs = rng.random((n_rows, 2)) * np.array([0.3, 1.0])  # order can outweigh click
    labels = (rng.random((n_rows, 2)) < probs).astype(np.float32)
    pred = {"labels": labels, "probs": probs, "score": probs @ w, "user": users}
    out = eval_report.report(
        pred, tasks=("click", "order"), cascade="none", loss_weights=(1.0, 0.02), top_n=2
    )
    for k, task in enumerate(("click", "order")):
        want = _hit_rate(labels[:, k], probs @ w, users, 2)
        assert out[f"{task}@2"] == pytest.approx(want, abs=1e-12)
        # ranking by either probability alone gives another number: the test can tell
        others = {_hit_rate(labels[:, k], probs[:, j], users, 2) for j in (0, 1)}
        assert any(abs(o - want) > 1e-6 for o in others)


# ----------------------------------------------------------------------------- Table 1, :paper


def test_table_1_defaults():
    c = common.get_base_config()
    assert c.model.num_experts == 8
    assert tuple(c.model.expert_hidden) == (256, 128)
    assert tuple(c.model.tower_hidden) == (64,)
    assert c.model.embed_dim == 32
    assert c.model.tower_activation == "dice"
    assert c.optim.name == "adam" and c.optim.learning_rate == 1e-3
    assert c.batch_size == 1000
    assert [tuple(w) for w in c.loss.label_weights] == [(1.0, 1.0), (1.0, 1.0)]
    assert tuple(c.loss.loss_weights) == (1.0, 0.02)
    assert tuple(c.loss.export_weights) == (0.8, 0.2)
    assert c.loss.weighting == "static"
    assert c.metrics.top_n == 2


MODEL_CONFIGS = [
    "mlp", "shared_bottom", "omoe", "mmoe", "esmm", "cgc", "ple", "aitm", "coarse_attention",
    "fine_attention", "boost_experts", "expert_attention", "feature_attention", "sequence_mmoe",
    "multisource", "paper_full",
]  # fmt: skip


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_the_paper_switch_gives_the_papers_protocol(name):
    module = importlib.import_module(f"configs.{name}")
    ours, paper = module.get_config(""), module.get_config("paper")
    # eqs. 14-15: every task its own BCE over all impressions; ESMM is its cascade
    assert paper.loss.cascade == ("product" if name == "esmm" else "none")
    assert tuple(paper.loss.loss_weights) == (1.0, 0.02)
    assert tuple(paper.loss.export_weights) == (0.8, 0.2)
    assert [tuple(w) for w in paper.loss.label_weights] == [(1.0, 1.0), (1.0, 1.0)]
    assert paper.loss.weighting == "static"
    assert paper.num_epochs == 5 and paper.num_steps is None
    assert paper.metrics.top_n == 2
    # nothing else moves: the model and the data are the config's own
    assert paper.model == ours.model and paper.data == ours.data
    # combinable with runlocal and seed, in any order
    local = module.get_config("seed=2,paper,runlocal")
    assert local.seed == 2 and local.data.synthetic.seed == 2
    assert local.model == module.get_config("runlocal,seed=2").model
    assert local.loss == paper.loss and local.num_epochs == 5


def test_the_paper_switch_through_the_data_configs():
    from configs import aliccp, phenomena

    c = aliccp.get_config("model=paper_full,paper")
    assert c.model.name == "paper_full" and c.loss.cascade == "none" and c.num_epochs == 5
    assert c.data.kind == "prepared"
    c = phenomena.get_config("model=coarse_attention,phenomenon=sequence,paper")
    assert c.loss.cascade == "none" and c.num_epochs == 5
    assert phenomena.get_config("model=mmoe").loss.cascade == "masked"
    with pytest.raises(ValueError, match="config argument 'paper' is not one of"):
        importlib.import_module("configs.census").get_config("paper")
