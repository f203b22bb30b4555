"""Optimizer and schedules, with parameter groups: embedding tables, dense weights, task weights.

Embedding tables (``params["inputs"]["tables"]``) and dense weights get their own learning-rate
scale and weight decay; decay never applies to biases or Dice/PReLU slopes.

The learnable parameters of a learned loss weighting (``params["task_weighting"]``, present only
under ``uncertainty`` and ``gradnorm``, see ``mtl_jax/weighting.py``) are a third group that the
model's transformation never sees: ``optax.partition`` gives them Adam (optax's default betas and
eps) at ``config.loss.weighting_lr``, without weight decay or gradient clipping. Their gradients
(of the weighting's own objective under GradNorm) are on another scale than the model's, so
sharing the model's clipping or learning rate would couple the two.

``config.optim.embedding_update`` chooses how the tables are updated:

* ``dense``            the tables are ordinary parameters of the optax optimizer: every step
                       reads and writes every row (and, with Adam, decays every row's moments).
* ``lazy_adam``        only the rows the batch touched are updated, with Adam moments kept per
                       row and advanced only when the row is touched (TF's LazyAdam semantics;
                       bias correction uses the global step). Untouched rows cost nothing, so the
                       step no longer scales with the vocabulary.
* ``rowwise_adagrad``  touched rows only; one Adagrad accumulator per row (mean squared gradient
                       over the row), as in large-scale recommenders' embedding optimizers.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("adam", "adamw", "adagrad", "sgd")
EMBEDDING_UPDATES = ("dense", "lazy_adam", "rowwise_adagrad")
TABLES = ("inputs", "tables")  # where every model keeps its fused embedding tables
TASK_WEIGHTING = "task_weighting"  # top-level params key of a learned loss weighting's params
SCHEDULES = ("constant", "warmup_cosine", "warmup_linear")


def param_group(path: tuple) -> str:
    """``embed`` for embedding tables, ``dense`` for everything else."""
    keys = [getattr(k, "key", getattr(k, "name", k)) for k in path]
    return "embed" if "tables" in keys else "dense"


def schedule(cfg, total_steps: int) -> optax.Schedule:
    lr = cfg.learning_rate
    if cfg.schedule == "constant":
        return optax.constant_schedule(lr)
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    if cfg.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_steps, warmup + 1))
    if cfg.schedule == "warmup_linear":
        return optax.join_schedules(
            [
                optax.linear_schedule(0.0, lr, max(warmup, 1)),
                optax.linear_schedule(lr, 0.0, max(total_steps - warmup, 1)),
            ],
            [warmup],
        )
    raise ValueError(f"config.optim.schedule must be one of {SCHEDULES}, got {cfg.schedule!r}")


def _decay_mask(params):
    """Weight decay on matrices only: kernels and embedding tables, not biases or slopes."""

    def is_matrix(path, _):
        keys = [getattr(k, "key", getattr(k, "name", k)) for k in path]
        return "kernel" in keys or "tables" in keys

    return jax.tree_util.tree_map_with_path(is_matrix, params)


def _base(cfg, lr, weight_decay: float) -> optax.GradientTransformation:
    if cfg.name in ("adam", "adamw"):
        return optax.adamw(
            lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=weight_decay, mask=_decay_mask
        )
    if cfg.name == "adagrad":
        return optax.adagrad(lr, eps=cfg.eps)
    if cfg.name == "sgd":
        return optax.sgd(lr, momentum=cfg.b1 or None)
    raise ValueError(f"config.optim.name must be one of {OPTIMIZERS}, got {cfg.name!r}")


def _model_tx(cfg, lr) -> optax.GradientTransformation:
    dense = _base(cfg, lr, cfg.weight_decay if cfg.name == "adamw" else 0.0)
    embed_lr = lambda step: lr(step) * cfg.embed_lr_scale
    embed = _base(cfg, embed_lr, cfg.embed_weight_decay if cfg.name == "adamw" else 0.0)
    tx = optax.multi_transform(
        {"dense": dense, "embed": embed},
        lambda params: jax.tree_util.tree_map_with_path(lambda p, _: param_group(p), params),
    )
    if cfg.clip_norm and cfg.clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), tx)
    return tx


def split_tables(params: dict) -> tuple[dict, dict]:
    """(tables: key → [rows, D], the other params without the tables).

    A model of dense-only data has no tables (its state has no ``inputs`` entry at all).
    """
    if TABLES[0] not in params:
        return {}, params
    inputs = dict(params[TABLES[0]])
    tables = inputs.pop(TABLES[1], {})
    return tables, dict(params, **{TABLES[0]: inputs})


def merge_tables(rest: dict, tables: dict) -> dict:
    if not tables and TABLES[0] not in rest:
        return rest
    return dict(rest, **{TABLES[0]: dict(rest.get(TABLES[0], {}), **{TABLES[1]: tables})})


def _label(params: dict) -> dict:
    """``weighting`` for the task-weighting parameters, ``model`` for the rest (a prefix tree)."""
    return {k: "weighting" if k == TASK_WEIGHTING else "model" for k in params}


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """The model's optax transformation, a learned weighting's, and the row-wise table update.

    Attributes:
      model_tx: optax transformation of the model's params; all of them when
        ``embedding_update == "dense"``, else those without the tables.
      weighting_lr: ``config.loss.weighting_lr``, the learning rate of ``weighting_tx``.
      embedding_update: one of ``EMBEDDING_UPDATES``.
      embed_lr: learning-rate schedule of the tables.
    """

    model_tx: optax.GradientTransformation
    weighting_lr: float | None
    embedding_update: str
    embed_lr: optax.Schedule
    b1: float
    b2: float
    eps: float
    weight_decay: float

    @property
    def sparse(self) -> bool:
        return self.embedding_update != "dense"

    @property
    def weighting_tx(self) -> optax.GradientTransformation:
        """Adam (no decay, no clipping) for ``params[TASK_WEIGHTING]``: p + (-lr) · adam(g)."""
        return optax.chain(optax.scale_by_adam(), optax.scale(-self.weighting_lr))

    def dense_tx(self, params: dict) -> optax.GradientTransformation:
        """The transformation of ``params`` (without the tables when sparse): ``model_tx``, and
        ``weighting_tx`` for ``params[TASK_WEIGHTING]`` when they are there (``optax.partition``).
        """
        if TASK_WEIGHTING not in params:
            return self.model_tx
        return optax.partition({"model": self.model_tx, "weighting": self.weighting_tx}, _label)

    def init(self, params: dict) -> dict:
        """``tx``: the state of ``dense_tx``; ``embed`` when sparse: the tables' row states."""
        if not self.sparse:
            return {"tx": self.dense_tx(params).init(params)}
        tables, rest = split_tables(params)
        if self.embedding_update == "lazy_adam":
            embed = {k: {"m": jnp.zeros_like(t), "v": jnp.zeros_like(t)} for k, t in tables.items()}
        else:
            embed = {k: {"acc": jnp.full(t.shape[:1], 0.1, t.dtype)} for k, t in tables.items()}
        return {"tx": self.dense_tx(rest).init(rest), "embed": embed}

    def update_rows(self, tables, embed_state, rows, row_grads, step):
        """Updates the touched rows of every table.

        Args:
          tables: key → [R, D] tables.
          embed_state: key → per-row optimizer state.
          rows: key → [U] unique row ids touched by the batch; entries equal to R are padding.
          row_grads: key → [U, D] gradients of those rows.
          step: the number of updates applied so far.
        """
        lr = self.embed_lr(step)
        new_tables, new_state = {}, {}
        for k, table in tables.items():
            u, g = rows[k], row_grads[k].astype(table.dtype)
            p = jnp.take(table, u, axis=0, mode="fill", fill_value=0)
            st = embed_state[k]
            if self.embedding_update == "lazy_adam":
                m = (
                    self.b1 * jnp.take(st["m"], u, axis=0, mode="fill", fill_value=0)
                    + (1 - self.b1) * g
                )
                v = (
                    self.b2 * jnp.take(st["v"], u, axis=0, mode="fill", fill_value=0)
                    + (1 - self.b2) * g * g
                )
                t = (step + 1).astype(jnp.float32)
                m_hat, v_hat = m / (1 - self.b1**t), v / (1 - self.b2**t)
                p = p - lr * (m_hat / (jnp.sqrt(v_hat) + self.eps) + self.weight_decay * p)
                new_state[k] = {
                    "m": st["m"].at[u].set(m, mode="drop"),
                    "v": st["v"].at[u].set(v, mode="drop"),
                }
            else:
                acc = jnp.take(st["acc"], u, mode="fill", fill_value=0) + jnp.mean(g * g, axis=-1)
                p = p - lr * g / (jnp.sqrt(acc)[:, None] + self.eps)
                new_state[k] = {"acc": st["acc"].at[u].set(acc, mode="drop")}
            new_tables[k] = table.at[u].set(p, mode="drop")
        return new_tables, new_state


def make_optimizer(config, total_steps: int) -> Optimizer:
    """Builds the optimizer from ``config.optim`` and ``config.loss.weighting_lr``."""
    cfg = config.optim
    if cfg.embedding_update not in EMBEDDING_UPDATES:
        raise ValueError(
            f"config.optim.embedding_update must be one of {EMBEDDING_UPDATES}, "
            f"got {cfg.embedding_update!r}"
        )
    if cfg.embedding_update == "lazy_adam" and cfg.name not in ("adam", "adamw"):
        raise ValueError(
            f"config.optim.embedding_update='lazy_adam' needs config.optim.name adam or adamw, "
            f"got {cfg.name!r}; use 'rowwise_adagrad' or 'dense'"
        )
    lr = schedule(cfg, total_steps)
    return Optimizer(
        model_tx=_model_tx(cfg, lr),
        weighting_lr=config.loss.get("weighting_lr"),
        embedding_update=cfg.embedding_update,
        embed_lr=lambda step: lr(step) * cfg.embed_lr_scale,
        b1=cfg.b1,
        b2=cfg.b2,
        eps=cfg.eps,
        weight_decay=cfg.embed_weight_decay if cfg.name == "adamw" else 0.0,
    )
