"""Multi-source "improved loss" (section 3.6, eq. 12): feature-space mapping + source discriminator.

Rows come from S data sources whose features are distributed differently (``batch["source"]`` in
[0, S)). Each source has its own *feature-space mapping* S_k, projecting the flat input into one
shared representation (width ``shared_dim``) that the experts and gates read. A discriminator D
tries to tell from the shared representation which source a row came from; the mappings (and
everything below them: the embeddings, the sequence pooling) are trained to make that impossible,
so the experts see the sources in one feature space ("share collective wisdom").

The adversarial game is trained with one optimizer through a gradient-reversal layer (Ganin &
Lempitsky, 2015): identity in the forward pass, ``−λ·grad`` in the backward pass. The model adds
the discriminator's cross-entropy to the loss (``aux_loss``); the discriminator's parameters
descend it, and everything before the reversal ascends it with weight λ
(``config.model.adversarial_weight``).

Where the paper is ambiguous, and what this module does:

* Eq. 12 scores each source's rows as "real" and the other sources' rows as "fake", i.e. one
  real/fake decision per source. That is a one-vs-rest reading of source classification; here D
  is one S-way softmax classifier and the loss its mean cross-entropy (DANN's form), which has the
  same optimum (D cannot beat the source prior) and needs one head instead of S.
* The sign: the paper adds its loss to the task loss without saying how the two sides are
  optimised; gradient reversal makes the discriminator minimise and the mapping maximise it.
* λ is constant (DANN ramps it from 0 to 1). Under Adam, λ only weighs the reversed gradient
  against the task gradient of the same parameters; where the task gradient is small (the mapping,
  early in training) the mapping answers the discriminator at full step size. As usual for
  gradient-reversal games, ``disc_accuracy`` then oscillates around chance (1/S) during training
  instead of settling there (runlocal, S = 3: windows between 0.0 and 0.98, mean 0.36-0.43).
* Saturation (measured at full scale, default synthetic data with 3 sources, λ = 0.1): within
  ~300 steps D separates the sources perfectly (``disc_accuracy`` 1.0, ``disc_loss`` 0.0) and
  stays there. The reversed gradient is −λ·∂CE/∂h, and ∂CE/∂logits = p − y vanishes when D is
  confidently right, so the mapping stops receiving any adversarial signal: the model becomes
  MMoE with per-source input maps. ``adversarial_objective="confusion"`` (Tzeng et al., ICCV
  2015) avoids that: D still descends its cross-entropy (on the detached representation), and
  the mapping descends λ · CE(uniform, D(h)) through a frozen copy of D, whose gradient
  Σ_s (p_s − 1/S) ∂logit_s/∂h is largest exactly when D is confident. ``"reversal"`` (the
  default) is DANN's form.
* The mapping is an MLP per source (``mapping_hidden`` ReLU layers, then a linear layer to
  ``shared_dim``), run for all sources as one stacked einsum; each row keeps its own source's
  output. The discriminator is an MLP (``discriminator_hidden``, ReLU) with S logits.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mtl_jax.models.layers import StackedLinear, StackedMLP


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def gradient_reversal(x: jax.Array, weight: float) -> jax.Array:
    """Identity forward; the backward pass multiplies the incoming gradient by ``−weight``."""
    return x


def _reversal_fwd(x, weight):
    return x, None


def _reversal_bwd(weight, _, g):
    return (jax.tree.map(lambda t: (-weight * t).astype(t.dtype), g),)


gradient_reversal.defvjp(_reversal_fwd, _reversal_bwd)


class FeatureSpaceMapping(nnx.Module):
    """S per-source maps into one shared space: ``(x [B, I], source [B]) → [B, shared_dim]``."""

    def __init__(
        self,
        num_sources: int,
        in_features: int,
        shared_dim: int,
        hidden: Sequence[int] = (),
        *,
        rngs: nnx.Rngs,
    ):
        self.hidden = StackedMLP(num_sources, in_features, hidden, activation="relu", rngs=rngs)
        self.out = StackedLinear(num_sources, self.hidden.out_features, shared_dim, rngs=rngs)
        self.num_sources = num_sources

    def __call__(self, x: jax.Array, source: jax.Array, *, train: bool) -> jax.Array:
        every = self.out(self.hidden(x, train=train, keep_shared=True))  # [B, S, shared]
        onehot = jax.nn.one_hot(source, self.num_sources, dtype=every.dtype)  # [B, S]
        return jnp.einsum("bs,bsd->bd", onehot, every)  # [B, shared]: the row's own source


OBJECTIVES = ("reversal", "confusion")


class SourceDiscriminator(nnx.Module):
    """Predicts the source from the shared representation; the representation is trained against
    it (``objective``: gradient reversal, or confusion through a frozen copy; module docstring).

    Returns ``(loss, metrics)``: the loss to add to the task loss, and ``{"disc_loss",
    "disc_accuracy"}`` (D's mean cross-entropy and accuracy over the valid rows), plus
    ``"disc_confusion"`` (the mapping's CE against uniform) under ``"confusion"``.
    """

    def __init__(
        self,
        num_sources: int,
        in_features: int,
        hidden: Sequence[int] = (64,),
        *,
        adversarial_weight: float = 0.1,
        objective: str = "reversal",
        rngs: nnx.Rngs,
    ):
        self.hidden = StackedMLP(1, in_features, hidden, activation="relu", rngs=rngs)
        self.out = StackedLinear(1, self.hidden.out_features, num_sources, rngs=rngs)
        self.adversarial_weight = adversarial_weight
        self.objective = objective

    def logits(self, h: jax.Array, *, train: bool) -> jax.Array:
        h = self.hidden(h, train=train, keep_shared=True)
        return self.out(h)[:, 0].astype(jnp.float32)  # [B, S]

    def __call__(
        self,
        shared: jax.Array,
        source: jax.Array,
        *,
        train: bool,
        valid: jax.Array | None = None,
    ) -> tuple[jax.Array, dict]:
        w = jnp.ones(shared.shape[:1], jnp.float32) if valid is None else valid.astype(jnp.float32)
        denom = jnp.maximum(w.sum(), 1.0)

        def mean(v):
            return (v * w).sum() / denom

        if self.objective == "reversal":
            logits = self.logits(gradient_reversal(shared, self.adversarial_weight), train=train)
        else:
            logits = self.logits(jax.lax.stop_gradient(shared), train=train)  # trains D only
        ce = -jnp.take_along_axis(
            jax.nn.log_softmax(logits, axis=-1), source[:, None].astype(jnp.int32), axis=-1
        )[:, 0]  # [B]
        correct = (jnp.argmax(logits, axis=-1) == source).astype(jnp.float32)  # [B]
        loss = mean(ce)
        metrics = {"disc_loss": loss, "disc_accuracy": mean(correct)}
        if self.objective == "confusion":
            graphdef, state = nnx.split(self)
            frozen = nnx.merge(graphdef, jax.tree.map(jax.lax.stop_gradient, state))
            flog = jax.nn.log_softmax(frozen.logits(shared, train=train), axis=-1)
            confusion = mean(-flog.mean(axis=-1))  # CE(uniform, D(h)): trains the mapping only
            metrics["disc_confusion"] = confusion
            loss = loss + self.adversarial_weight * confusion
        return loss, metrics
