"""Multi-task loss weighting: how the T task losses become one update (``config.loss.weighting``).

With λ = ``config.loss.loss_weights`` and L_k = ``losses.task_losses``, the weightings are:

* ``static``       total = Σ_k λ_k L_k (``losses.weighted_total``). No learnable parameters.
* ``uncertainty``  Kendall, Gal & Cipolla (CVPR 2018), in the form commonly used for
                   classification losses: learned log-variances s_k (``log_var`` [T], init 0) and
                   total = Σ_k (λ_k · exp(−s_k) · L_k + s_k / 2).
                   The s_k are trained on the same total as the model; at the optimum
                   exp(−s_k) = 1 / (2 λ_k L_k), so a task with a larger (noisier) loss gets a larger
                   s_k and a smaller effective weight λ_k exp(−s_k).
* ``gradnorm``     Chen et al. (ICML 2018): learned task weights w_k (``weight`` [T], init 1) that
                   replace λ: total = Σ_k w_k L_k (``loss_weights`` are not used). With
                   g_k = ∇_W L_k the gradient of task k over the balanced parameters W
                   (``gradnorm_params``) and G_k = w_k |g_k|, the target is
                   G*_k = mean(G) · r_k^α, where r_k = (L_k / L_k(0)) / mean_j (L_j / L_j(0)) is the
                   relative inverse training rate and α = ``config.loss.gradnorm_alpha``. The
                   weights minimise Σ_k |G_k − G*_k| (G* held constant) and nothing else; after each
                   update they are kept positive and renormalised to Σ_k w_k = T. L_k(0) is the
                   first positive loss of task k, normally the first step's (``update_initial``).
                   Why not w_k λ_k L_k: GradNorm balances the gradient norms whatever λ is, so λ
                   would only change where w starts and, since Σ w = T, shrink the total by up to
                   max λ / min λ (50× at the paper's 1 : 0.02). Adam's slow second-moment average
                   then scales the model's steps down for hundreds of steps; on runlocal MMoE the
                   click task stalled while the click weight overshot towards 0.
* ``pcgrad``       Yu et al. (NeurIPS 2020): "gradient surgery" on the shared parameters. Each
                   task's gradient g_k = ∇ (λ_k L_k) of the shared parameters is projected, against
                   each other task j in turn, onto the normal plane of g_j when g_k · g_j < 0
                   (``pcgrad``); the shared parameters get Σ_k g_k^PC, the task-specific ones their
                   ordinary gradient Σ_k g_k. The order of the other tasks is random per step
                   (drawn from the step's key), as in the paper; with two tasks it does not matter.

A model's auxiliary loss (``aux_loss``) joins the total with weight 1 under every weighting; its
gradient is neither weighted by GradNorm nor projected by PCGrad.

Shared vs task-specific parameters: ``config.loss.task_specific_params`` names the top-level
parameter keys that belong to single tasks (default ``("towers",)``); everything else is shared,
including the embedding tables (under the sparse embedding update, the block of rows the batch
touched). GradNorm balances the gradient norms over ``config.loss.gradnorm_params`` ("a/b" paths
into the params); empty means every shared parameter except the embedding tables.

The learned weightings' (``LEARNED``) parameters live in ``params[optim.TASK_WEIGHTING]``
(``init_params``) so that they are checkpointed and sharded with the model; under ``static`` and
``pcgrad`` there are none. The train step splits them off before the model is merged. They are
updated by their own transformation (``optim.Optimizer.weighting_tx``: Adam at
``config.loss.weighting_lr``, no weight decay, no clipping), never by the model's, and then
``constrain``-ed.

Everything here is a pure function of arrays; ``steps.train_step`` calls it, never a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from mtl_jax import optim

WEIGHTINGS = ("static", "uncertainty", "gradnorm", "pcgrad")
LEARNED = ("uncertainty", "gradnorm")  # the weightings with learnable parameters
MIN_WEIGHT = 1e-3  # GradNorm weights stay positive: a zero weight could never recover


def init_params(num_tasks: int) -> dict:
    """The learnable parameters of a learned weighting: ``log_var`` [T] = 0, ``weight`` [T] = 1.

    Both exist under either learned weighting, so that the two share one state structure; a
    weighting leaves the other's parameters at their initial values.
    """
    return {
        "log_var": jnp.zeros((num_tasks,), jnp.float32),
        "weight": jnp.ones((num_tasks,), jnp.float32),
    }


def init_state(weighting_params: dict) -> dict:
    """Non-trainable state: GradNorm's initial task losses L_k(0), 0 until first seen."""
    return {"initial_losses": jnp.zeros_like(weighting_params["weight"])}


def split_params(params: dict) -> tuple[dict | None, dict]:
    """(weighting params or None, the model's params without them)."""
    if optim.TASK_WEIGHTING not in params:
        return None, params
    model_params = {k: v for k, v in params.items() if k != optim.TASK_WEIGHTING}
    return params[optim.TASK_WEIGHTING], model_params


def merge_params(model_params: dict, weighting_params: dict | None) -> dict:
    if weighting_params is None:
        return model_params
    return dict(model_params, **{optim.TASK_WEIGHTING: weighting_params})


def uncertainty_total(
    task_losses: jax.Array, loss_weights: Sequence[float], log_var: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Σ_k (λ_k exp(−s_k) L_k + s_k / 2) and the effective weights λ_k exp(−s_k), [T].

    Args:
      task_losses: [T] task losses L_k.
      loss_weights: [T] static weights λ_k.
      log_var: [T] learned log-variances s_k.
    """
    weights = jnp.asarray(loss_weights, jnp.float32) * jnp.exp(-log_var)  # [T]
    total = jnp.sum(weights * task_losses) + 0.5 * jnp.sum(log_var)
    return total, weights


def update_initial(initial_losses: jax.Array, task_losses: jax.Array) -> jax.Array:
    """Records L_k(0): each task's first positive loss.

    Usually the first step's; a batch without clicks has no (masked) order loss, so a zero loss
    does not count as the initial one.
    """
    return jnp.where(initial_losses > 0, initial_losses, task_losses)


def inverse_training_rates(task_losses: jax.Array, initial_losses: jax.Array) -> jax.Array:
    """r_k = (L_k / L_k(0)) / mean_j (L_j / L_j(0)), [T]; a task without L_k(0) yet counts as 1."""
    ratio = jnp.where(
        initial_losses > 0, task_losses / jnp.where(initial_losses > 0, initial_losses, 1.0), 1.0
    )
    return ratio / jnp.maximum(jnp.mean(ratio), 1e-12)


def gradnorm_loss(
    weights: jax.Array,
    grad_norms: jax.Array,
    task_losses: jax.Array,
    initial_losses: jax.Array,
    alpha: float,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """GradNorm's objective Σ_k |G_k − G*_k| as a function of the weights.

    Args:
      weights: [T] task weights w_k.
      grad_norms: [T] |∇_W L_k|, the unweighted gradient norm of each task.
      task_losses: [T] L_k of this step.
      initial_losses: [T] L_k(0).
      alpha: the restoring-force strength α.

    Returns:
      The objective and (G [T], G* [T]); G* is a constant of the objective (no gradient).
    """
    norms = weights * grad_norms  # [T] G_k
    rates = inverse_training_rates(task_losses, initial_losses)
    target = jax.lax.stop_gradient(jnp.mean(norms) * rates**alpha)  # [T] G*_k
    return jnp.sum(jnp.abs(norms - target)), (norms, target)


def renormalise(weights: jax.Array) -> jax.Array:
    """Positive weights that sum to T (GradNorm's step after every weight update)."""
    w = jnp.maximum(weights, MIN_WEIGHT)
    return w * (w.shape[0] / jnp.sum(w))


def constrain(weighting_params: dict) -> dict:
    """The parameters after an update: GradNorm's weights ``renormalise``-d, the log-variances
    free. Under ``uncertainty`` the weights stay exactly 1 (zero gradient), which this keeps."""
    return dict(weighting_params, weight=renormalise(weighting_params["weight"]))


def pcgrad(task_grads: jax.Array, key: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Projects conflicting task gradients (PCGrad).

    For every task i, starting from g_i^PC = g_i and visiting each other task j in turn:
    if g_i^PC · g_j < 0, g_i^PC ← g_i^PC − (g_i^PC · g_j / |g_j|²) g_j. The g_j are the original
    gradients, as in the paper's algorithm.

    Args:
      task_grads: [T, P] flattened gradient of each task.
      key: order of the other tasks: a fresh random order per task drawn from ``key``; ``None``
        visits them in index order.

    Returns:
      The projected gradients [T, P] (sum them for the update) and the fraction of task pairs
      whose original gradients conflict (scalar).
    """
    T = task_grads.shape[0]
    g = task_grads.astype(jnp.float32)  # [T, P]
    sq_norms = jnp.sum(g * g, axis=1)  # [T]
    if key is None:
        orders = jnp.broadcast_to(jnp.arange(T), (T, T))
    else:
        orders = jax.vmap(lambda k: jax.random.permutation(k, T))(jax.random.split(key, T))

    def project(i, order):
        gi = g[i]  # [P]
        for p in range(T):
            j = order[p]
            gj = g[j]  # [P]
            dot = jnp.dot(gi, gj)
            coef = jnp.where(
                (j != i) & (dot < 0), dot / jnp.maximum(sq_norms[j], jnp.finfo(g.dtype).tiny), 0.0
            )
            gi = gi - coef * gj
        return gi

    projected = jax.vmap(project)(jnp.arange(T), orders)  # [T, P]
    if T < 2:
        return projected, jnp.zeros((), jnp.float32)
    dots = g @ g.T  # [T, T]
    pairs = jnp.triu(jnp.ones((T, T), bool), k=1)
    conflicts = jnp.sum((dots < 0) & pairs) / jnp.sum(pairs)
    return projected, conflicts.astype(jnp.float32)


def split_shared(params: dict, task_specific: Sequence[str]) -> tuple[dict, dict]:
    """(shared params, task-specific params): a split of the top-level keys.

    Raises:
      ValueError: if a name of ``config.loss.task_specific_params`` is not a top-level key.
    """
    missing = sorted(set(task_specific) - set(params))
    if missing:
        raise ValueError(
            f"config.loss.task_specific_params names {missing}, which the model's params lack; "
            f"its top-level params are {sorted(params)}"
        )
    shared = {k: v for k, v in params.items() if k not in task_specific}
    specific = {k: v for k, v in params.items() if k in task_specific}
    return shared, specific


def gradnorm_subtree(
    params: dict, task_specific: Sequence[str], paths: Sequence[str]
) -> list[jax.Array]:
    """The leaves of ``params`` whose gradient norms GradNorm balances.

    Args:
      params: the model's params (or any tree of that structure, such as per-task gradients).
      task_specific: ``config.loss.task_specific_params``.
      paths: ``config.loss.gradnorm_params``: "a/b" paths into ``params``; empty selects every
        shared parameter except the embedding tables.
    """
    if not paths:
        shared, _ = split_shared(params, task_specific)
        _, shared = optim.split_tables(shared)
        leaves = jax.tree.leaves(shared)
        if not leaves:
            raise ValueError(
                "config.loss.gradnorm_params=() selects the shared non-table parameters, and this "
                f"model has none besides {list(task_specific)}; name a subtree, e.g. 'inputs'"
            )
        return leaves
    leaves = []
    for path in paths:
        node = params
        for part in path.split("/"):
            if not isinstance(node, dict) or part not in node:
                have = sorted(node) if isinstance(node, dict) else []
                raise ValueError(
                    f"config.loss.gradnorm_params: {path!r} is not in the params "
                    f"(no {part!r}; there: {have})"
                )
            node = node[part]
        leaves.extend(jax.tree.leaves(node))
    return leaves
