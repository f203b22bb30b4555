"""Task weighting (mtl_jax/weighting.py): PCGrad's projection, uncertainty and GradNorm on toy
problems, static weighting unchanged, every weighting wired into the train step, and runlocal
training with each weighting."""

import functools
import json

import chex
import helpers
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree
from test_train import restore_state

from configs import common
from mtl_jax import config_check, loop, losses, optim, steps, weighting
from mtl_jax.state import create_train_state, init_model

# --- PCGrad -----------------------------------------------------------------------------------


def test_pcgrad_projects_conflicting_gradients():
    g = jnp.array([[1.0, 0.0], [-1.0, 1.0]])
    # g1·g2 = −1: g1 − (−1/2) g2 = (0.5, 0.5); g2 − (−1/1) g1 = (0, 1).
    for key in (None, jax.random.key(3)):
        projected, conflicts = weighting.pcgrad(g, key)
        np.testing.assert_allclose(projected, [[0.5, 0.5], [0.0, 1.0]], atol=1e-7)
        assert float(conflicts) == 1.0
        # Each projected gradient is orthogonal to the other task's original gradient.
        np.testing.assert_allclose(projected[0] @ g[1], 0.0, atol=1e-7)
        np.testing.assert_allclose(projected[1] @ g[0], 0.0, atol=1e-7)


def test_pcgrad_passes_non_conflicting_gradients_unchanged():
    g = jnp.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    projected, conflicts = weighting.pcgrad(g, jax.random.key(0))
    np.testing.assert_array_equal(projected, g)
    assert float(conflicts) == 0.0


def test_pcgrad_three_tasks_in_index_order():
    # Index order, projecting the running g_i onto the normal plane of the original g_j:
    # g1: vs g2 → (0.5, 0.5), vs g3 (dot −0.5) → (0.5, 0); g2: vs g1 → (0, 1), vs g3 → (0, 0);
    # g3: vs g1 (dot 0) unchanged, vs g2 (dot −1) → (−0.5, −0.5). Two of the three pairs conflict.
    g = jnp.array([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]])
    projected, conflicts = weighting.pcgrad(g)
    np.testing.assert_allclose(projected, [[0.5, 0.0], [0.0, 0.0], [-0.5, -0.5]], atol=1e-7)
    np.testing.assert_allclose(conflicts, 2 / 3, rtol=1e-6)


# --- uncertainty -------------------------------------------------------------------------------


def _toy_regression(noise, n=512, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    a = rng.normal(size=(len(noise), d)).astype(np.float32)
    y = x @ a.T + rng.normal(size=(n, len(noise))).astype(np.float32) * np.asarray(noise)
    return jnp.asarray(x), jnp.asarray(y)


def _weighting_tx(learning_rate):
    """The train step's transformation of the task-weighting parameters."""
    config = common.get_base_config("runlocal")
    config.loss.weighting_lr = learning_rate
    return optim.make_optimizer(config, 1).weighting_tx


def test_uncertainty_gives_the_noisier_task_a_larger_log_variance():
    x, y = _toy_regression(noise=(0.1, 1.0))
    loss_weights = (1.0, 1.0)
    weighting_tx = _weighting_tx(0.05)
    model_tx = optax.adam(0.05)
    params = {"w": jnp.zeros((x.shape[1], 2)), "b": jnp.zeros((2,))}
    tw = weighting.init_params(2)
    tw_state = weighting_tx.init(tw)

    def total(params, log_var):
        task = jnp.mean(jnp.square(x @ params["w"] + params["b"] - y), axis=0)  # [T] MSE
        return weighting.uncertainty_total(task, loss_weights, log_var)[0], task

    @jax.jit
    def step(params, model_state, tw, tw_state):
        (_, task), (g, g_log_var) = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(
            params, tw["log_var"]
        )
        updates, model_state = model_tx.update(g, model_state)
        grads = {"log_var": g_log_var, "weight": jnp.zeros(2)}
        tw_updates, tw_state = weighting_tx.update(grads, tw_state)
        tw = optax.apply_updates(tw, tw_updates)
        return optax.apply_updates(params, updates), model_state, tw, tw_state, task

    model_state = model_tx.init(params)
    for _ in range(400):
        params, model_state, tw, tw_state, task = step(params, model_state, tw, tw_state)
    s = np.asarray(tw["log_var"])
    assert s[1] > s[0] + 2.0, s  # noise variance 1.0 vs 0.01
    _, weights = weighting.uncertainty_total(task, loss_weights, tw["log_var"])
    assert weights[1] < weights[0] / 5
    # The optimum of λ exp(−s) L + s/2 over s is s = log(2 λ L).
    np.testing.assert_allclose(s, np.log(2 * np.asarray(task)), atol=0.15)


# --- GradNorm ----------------------------------------------------------------------------------


def test_gradnorm_keeps_gradient_norms_at_their_targets():
    # Two noisy regression tasks of equal difficulty on a shared linear layer; the second task's
    # targets are 10× larger, so its gradient starts ~10× larger. GradNorm must pull G_k onto
    # G*_k = mean(G) r_k^α. Minibatches keep the gradients from vanishing at convergence, so G is
    # noisy step to step and is compared with its target on average over the last 100 steps.
    dim, batch, alpha, scale = 6, 256, 1.5, jnp.array([1.0, 10.0])
    a = np.random.default_rng(1).normal(size=(2, dim)).astype(np.float32)
    a = jnp.asarray(a / np.linalg.norm(a, axis=1, keepdims=True) * np.sqrt(dim))
    weighting_tx = _weighting_tx(0.01)
    model_tx = optax.adam(0.01)
    key = jax.random.key(0)
    params = {
        "shared": 0.3 * jax.random.normal(jax.random.fold_in(key, 1), (dim, 8)),
        "heads": 0.3 * jax.random.normal(jax.random.fold_in(key, 2), (8, 2)),
    }
    tw = weighting.init_params(2)
    tw_state = (weighting_tx.init(tw), weighting.init_state(tw))

    @jax.jit
    def step(params, model_state, tw, tw_state, i):
        kx, kn = jax.random.split(jax.random.fold_in(key, i))
        x = jax.random.normal(kx, (batch, dim))
        y = (x @ a.T + 0.5 * jax.random.normal(kn, (batch, 2))) * scale  # [N, T]
        task_losses = lambda p: jnp.mean(jnp.square(x @ p["shared"] @ p["heads"] - y), axis=0)
        task, vjp_fn = jax.vjp(task_losses, params)
        (rows,) = jax.vmap(vjp_fn)(jnp.eye(2))  # per-task gradients, leading [T]
        norms = jnp.sqrt(jnp.sum(jnp.square(rows["shared"]), axis=(1, 2)))  # [T]
        w = tw["weight"]
        grads = jax.tree.map(lambda r: jnp.tensordot(w, r, axes=1), rows)
        initial = weighting.update_initial(tw_state[1]["initial_losses"], task)
        (_, (G, target)), g_w = jax.value_and_grad(weighting.gradnorm_loss, has_aux=True)(
            w, norms, task, initial, alpha
        )
        updates, model_state = model_tx.update(grads, model_state)
        tw_updates, adam = weighting_tx.update(
            {"log_var": jnp.zeros(2), "weight": g_w}, tw_state[0]
        )
        tw = weighting.constrain(optax.apply_updates(tw, tw_updates))
        tw_state = (adam, {"initial_losses": initial})
        return optax.apply_updates(params, updates), model_state, tw, tw_state, G, target

    model_state = model_tx.init(params)
    norms, targets = [], []
    for i in range(400):
        params, model_state, tw, tw_state, G, target = step(params, model_state, tw, tw_state, i)
        norms.append(np.asarray(G))
        targets.append(np.asarray(target))
    norms, targets = np.array(norms), np.array(targets)  # [steps, T]
    assert np.max(np.abs(norms[0] - targets[0]) / targets[0]) > 0.5  # unbalanced at the start
    G, target = norms[-100:].mean(axis=0), targets[-100:].mean(axis=0)
    assert np.max(np.abs(G - target) / target) < 0.15, (G, target)
    w = np.asarray(tw["weight"])
    np.testing.assert_allclose(w.sum(), 2.0, rtol=1e-6)
    assert w[0] > 4 * w[1], w  # the small-gradient task is weighted up (about 10:1)


def test_gradnorm_subtree_selection():
    params = {
        "inputs": {"tables": {"d8": jnp.ones((5, 8))}},
        "experts": {"kernel": jnp.ones((3, 2))},
        "towers": {"kernel": jnp.ones((2, 2))},
    }
    leaves = weighting.gradnorm_subtree(params, ("towers",), ())
    assert [x.shape for x in leaves] == [(3, 2)]  # not the tables, not the towers
    assert len(weighting.gradnorm_subtree(params, ("towers",), ("inputs/tables",))) == 1
    with pytest.raises(ValueError, match="config.loss.gradnorm_params: 'experts/bias'"):
        weighting.gradnorm_subtree(params, ("towers",), ("experts/bias",))
    with pytest.raises(ValueError, match="config.loss.task_specific_params names \\['heads'\\]"):
        weighting.split_shared(params, ("heads",))


def test_renormalise_and_inverse_training_rates():
    np.testing.assert_allclose(weighting.renormalise(jnp.array([0.5, 1.5, -1.0])).sum(), 3.0)
    assert float(weighting.renormalise(jnp.array([1.0, -1.0]))[1]) > 0
    r = weighting.inverse_training_rates(jnp.array([0.5, 2.0]), jnp.array([1.0, 2.0]))
    np.testing.assert_allclose(r, [2 / 3, 4 / 3], rtol=1e-6)
    initial = weighting.update_initial(jnp.array([0.7, 0.0]), jnp.array([0.5, 0.3]))
    np.testing.assert_array_equal(initial, np.float32([0.7, 0.3]))  # set once, when first positive


# --- the train step ----------------------------------------------------------------------------


def _setup(kind):
    # SGD (momentum starts at 0) with learning rate 1: a first step moves the params by exactly
    # minus the gradient the step used.
    config = common.get_base_config("runlocal")
    config.loss.weighting = kind
    config.optim.update(embedding_update="dense", name="sgd", learning_rate=1.0)
    schema = helpers.tiny_schema()
    # Seed 3: the click and order gradients of the shared params conflict on this batch.
    batch = {k: jnp.asarray(v) for k, v in helpers.tiny_batch(schema, 32, seed=3).items()}
    tx = optim.make_optimizer(config, 10)
    graphdef, params, model_state = init_model(schema, helpers.model_config(), 0, kind)
    return config, batch, tx, graphdef, create_train_state(params, model_state, tx)


@pytest.fixture(scope="module")
def first_steps():
    """weighting → (config, batch, graphdef, tx, state, new state, metrics) of one jitted step."""
    out = {}
    for kind in weighting.WEIGHTINGS:
        config, batch, tx, graphdef, state = _setup(kind)
        step = jax.jit(functools.partial(steps.train_step, graphdef=graphdef, tx=tx, config=config))
        out[kind] = (config, batch, graphdef, tx, state, *step(state, batch))
    return out


def _moved(state, new_state):
    """Minus the change of the model's params (the gradient, under SGD at learning rate 1)."""
    _, before = weighting.split_params(state.params)
    _, after = weighting.split_params(new_state.params)
    return jax.tree.map(jnp.subtract, before, after)


def _task_loss_fn(config, batch, graphdef, model_state):
    def task_loss_fn(model_params):
        model = nnx.merge(graphdef, model_params, model_state)
        out = model(batch, train=True, key=jax.random.fold_in(jax.random.key(config.seed), 0))
        return losses.task_losses(
            out["logits"],
            batch["labels"],
            cascade=config.loss.cascade,
            label_weights=config.loss.label_weights,
        )

    return task_loss_fn


def test_static_step_is_the_plain_weighted_sum(first_steps):
    config, batch, graphdef, tx, state, new_state, metrics = first_steps["static"]
    _, model_params = weighting.split_params(state.params)
    task_loss_fn = _task_loss_fn(config, batch, graphdef, state.model_state)

    @jax.jit
    def reference(model_params, tx_state):
        # The step as it was before weightings existed, op for op.
        def loss_fn(p):
            task = task_loss_fn(p)
            return losses.weighted_total(task, config.loss.loss_weights), task

        (total, task), grads = jax.value_and_grad(loss_fn, has_aux=True)(model_params)
        updates, _ = tx.model_tx.update(grads, tx_state, model_params)
        return optax.apply_updates(model_params, updates), total, task

    want, total, task = reference(model_params, state.opt_state["tx"])
    _, got = weighting.split_params(new_state.params)
    chex.assert_trees_all_equal(got, want)
    assert float(metrics["loss"]) == float(total)
    np.testing.assert_array_equal(metrics["task_losses"], task)
    np.testing.assert_array_equal(metrics["task_weights"], np.float32(config.loss.loss_weights))
    # Static weighting learns nothing: no weighting parameters, no weighting state.
    assert optim.TASK_WEIGHTING not in new_state.params
    assert "weighting" not in new_state.opt_state


def test_uncertainty_starts_out_static(first_steps):
    # With s = 0 the model's first update equals static weighting's.
    static = _moved(*first_steps["static"][4:6])
    chex.assert_trees_all_close(_moved(*first_steps["uncertainty"][4:6]), static, atol=1e-6)


def test_uncertainty_step_updates_the_log_variances(first_steps):
    config, _, _, _, state, new_state, metrics = first_steps["uncertainty"]
    lam = np.float32(config.loss.loss_weights)
    # d/ds_k [λ_k exp(−s_k) L_k + s_k/2] = 1/2 − λ_k L_k at s = 0; Adam's first step is −lr·sign.
    g = 0.5 - lam * np.asarray(metrics["task_losses"])
    log_var = np.asarray(new_state.params[optim.TASK_WEIGHTING]["log_var"])
    np.testing.assert_allclose(log_var, -config.loss.weighting_lr * np.sign(g), rtol=1e-4)
    np.testing.assert_array_equal(new_state.params[optim.TASK_WEIGHTING]["weight"], np.ones(2))
    np.testing.assert_allclose(metrics["task_weights"], lam, rtol=1e-6)  # exp(−0) = 1
    total = np.sum(lam * np.asarray(metrics["task_losses"]))
    np.testing.assert_allclose(metrics["loss"], total, rtol=1e-6)  # s/2 terms are 0


def test_gradnorm_step_updates_the_task_weights(first_steps):
    config, batch, graphdef, _, state, new_state, metrics = first_steps["gradnorm"]
    _, model_params = weighting.split_params(state.params)
    task_loss_fn = _task_loss_fn(config, batch, graphdef, state.model_state)
    jac = jax.jit(jax.jacrev(task_loss_fn))(model_params)  # ∇L_k, leading [T]
    # w = 1 replaces the loss weights: the model moves by Σ_k ∇L_k.
    chex.assert_trees_all_close(
        _moved(state, new_state), jax.tree.map(lambda x: x.sum(0), jac), atol=1e-6
    )
    np.testing.assert_array_equal(metrics["task_weights"], np.ones(2, np.float32))
    w = np.asarray(new_state.params[optim.TASK_WEIGHTING]["weight"])
    np.testing.assert_allclose(w.sum(), 2.0, rtol=1e-6)
    np.testing.assert_array_equal(
        new_state.opt_state["weighting"]["initial_losses"], metrics["task_losses"]
    )
    # At step 0 every r_k = 1, so the targets are mean(G): the task with the larger gradient
    # norm over the experts and gates is weighted down.
    leaves = weighting.gradnorm_subtree(jac, ("towers",), ())
    norms = np.sqrt(sum(np.sum(np.square(x), axis=tuple(range(1, x.ndim))) for x in leaves))
    np.testing.assert_allclose(metrics["gradnorm_loss"], np.abs(norms - norms.mean()).sum(), 1e-4)
    assert (w[0] < 1.0) == (norms[0] > norms[1]), (w, norms)


def test_pcgrad_step_projects_the_shared_gradient(first_steps):
    # The shared params move by the sum of the projected per-task gradients, the towers by their
    # ordinary gradient. With two tasks the visiting order does not matter.
    config, batch, graphdef, _, state, new_state, metrics = first_steps["pcgrad"]
    _, model_params = weighting.split_params(state.params)
    task_loss_fn = _task_loss_fn(config, batch, graphdef, state.model_state)
    lam = jnp.asarray(config.loss.loss_weights)
    jac = jax.jit(jax.jacrev(lambda p: lam * task_loss_fn(p)))(model_params)  # leading [T]
    shared, specific = weighting.split_shared(jac, ("towers",))
    projected, conflicts = weighting.pcgrad(jax.vmap(lambda t: ravel_pytree(t)[0])(shared))
    _, unravel = ravel_pytree(jax.tree.map(lambda x: x[0], shared))
    want = dict(unravel(projected.sum(0)), **jax.tree.map(lambda x: x.sum(0), specific))
    chex.assert_trees_all_close(_moved(state, new_state), want, atol=1e-6)
    assert float(conflicts) == 1.0  # the projection was exercised
    assert float(metrics["pcgrad_conflicts"]) == 1.0
    # ... and it changed the update: static weighting moves the shared params differently.
    static = weighting.split_shared(_moved(*first_steps["static"][4:6]), ("towers",))[0]
    assert not np.allclose(ravel_pytree(static)[0], projected.sum(0), atol=1e-6)


@pytest.mark.parametrize("kind", ["gradnorm", "pcgrad"])
def test_per_task_weightings_with_sparse_embedding_rows(kind, first_steps):
    # Under a sparse embedding update the differentiated tables are the batch's rows. The
    # dot products and norms of the per-task gradients are those of the dense tables (untouched
    # rows have zero gradient), so the dense params move exactly as with dense tables.
    config, batch, _, graphdef, _ = _setup(kind)
    config.optim.embedding_update = "rowwise_adagrad"
    tx = optim.make_optimizer(config, 10)
    _, params, model_state = init_model(helpers.tiny_schema(), helpers.model_config(), 0, kind)
    state = create_train_state(params, model_state, tx)
    step = jax.jit(functools.partial(steps.train_step, graphdef=graphdef, tx=tx, config=config))
    new_state, metrics = step(state, batch)
    _, non_tables = optim.split_tables(_moved(state, new_state))
    want = optim.split_tables(_moved(*first_steps[kind][4:6]))[1]
    chex.assert_trees_all_close(non_tables, want, rtol=1e-5, atol=1e-7)
    for k in metrics:
        np.testing.assert_allclose(metrics[k], first_steps[kind][6][k], rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_close(
        new_state.params.get(optim.TASK_WEIGHTING),
        first_steps[kind][5].params.get(optim.TASK_WEIGHTING),
        rtol=1e-5,
    )


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("weighting", "gradnrom", "config.loss.weighting must be one of"),
        ("weighting_lr", 0.0, "config.loss.weighting_lr must be a number > 0"),
        ("gradnorm_alpha", -1.0, "config.loss.gradnorm_alpha must be a number >= 0"),
        ("task_specific_params", ("",), "config.loss.task_specific_params must be a list"),
    ],
)
def test_bad_weighting_config_is_a_clear_error(key, value, message):
    config = common.get_base_config("runlocal")
    config.loss.weighting = "gradnorm"
    config.loss[key] = value
    with pytest.raises(ValueError, match=message):
        config_check.validate(config, helpers.tiny_schema())


# --- runlocal training -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", weighting.WEIGHTINGS)
def test_every_weighting_trains_runlocal_mmoe(kind, tmp_path):
    config = common.get_base_config("runlocal")
    config.loss.weighting = kind
    final = loop.train_and_evaluate(config, str(tmp_path))
    print(kind, {k: round(float(v), 4) for k, v in final["val"].items() if "auc" in k})
    assert final["val"]["click/auc"] > 0.6, final["val"]
    assert final["val"]["order/auc"] > 0.6, final["val"]
    rows = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert all(np.isfinite(r["loss"]) for r in rows if r["split"] == "train")


@pytest.mark.slow
def test_resume_with_uncertainty_weighting_is_exact(tmp_path):
    def config(num_steps):
        c = common.get_base_config("runlocal")
        c.loss.weighting = "uncertainty"
        c.update(num_steps=num_steps, checkpoint_every_steps=10, eval_every_steps=1000)
        return c

    loop.train_and_evaluate(config(20), str(tmp_path / "straight"))
    loop.train_and_evaluate(config(10), str(tmp_path / "resumed"))
    loop.train_and_evaluate(config(20), str(tmp_path / "resumed"))
    a = restore_state(str(tmp_path / "straight"), config(20))
    b = restore_state(str(tmp_path / "resumed"), config(20))
    assert int(a.step) == int(b.step) == 20
    assert np.all(a.params[optim.TASK_WEIGHTING]["log_var"] != 0)  # the log-variances were trained
    chex.assert_trees_all_equal(a.params, b.params)
    chex.assert_trees_all_equal(a.opt_state, b.opt_state)
