"""Gradient-boosting experts (the paper's section 3.3): experts in a chain instead of in parallel.

MMoE's experts are independent, like the trees of a random forest. The paper chains them like the
trees of gradient boosting: the outputs go into a "hub list"; the first expert reads the input
features alone, and every later expert reads the input features joined with the last output in the
hub list, i.e. expert i reads ``[x, expert_{i-1}(…)]``. The stacked outputs [B, E, H] are then
gated per task exactly as in MMoE.

Implementation. The chain is inherently sequential (E steps), so it is a ``jax.lax.scan`` over the
experts' stacked parameters: the graph holds one expert step however many experts there are, and
the parameters keep MMoE's stacked layout ``[E, I + H, H1]``. To make every step the same shape the
first expert's "previous output" is zeros, so expert 0 sees the input alone (the ``H`` rows of its
first kernel that read the previous output multiply zeros and are never trained). The input part
of every expert's first layer does not depend on the chain, so it is computed for all experts at
once, outside the scan, as one einsum (the wide ``I``-row matmul); the scan carries only the
``H``-wide recurrence.

Choice: the previous expert's output is passed with its gradient (no stop-gradient): the whole
chain is trained jointly from the task losses, as one network. Expert activations may be ``relu``,
``prelu`` or ``none``; ``dice`` (whose batch statistics would have to be carried through the scan)
is rejected with an error naming ``config.model.expert_activation``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mtl_jax.models.layers import StackedMLP

BOOST_ACTIVATIONS = ("relu", "prelu", "none")


class BoostExpertBank(nnx.Module):
    """E experts in a chain over one shared input: ``[B, I] → [B, E, H]``.

    Args:
      num_experts: E.
      in_features: input width I.
      hidden: layer widths of every expert; H = ``hidden[-1]``.
      activation: ``relu``, ``prelu`` or ``none``.
      dropout: dropout rate after each activation while training.
      rngs: parameter RNG.
    """

    def __init__(
        self,
        num_experts: int,
        in_features: int,
        hidden: Sequence[int],
        *,
        activation: str = "relu",
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        self.out_features = hidden[-1]
        # Expert i's first layer reads [x, expert_{i-1}] (I + H rows); parameters stay stacked.
        self.mlp = StackedMLP(
            num_experts,
            in_features + self.out_features,
            hidden,
            activation=activation,
            dropout=dropout,
            rngs=rngs,
        )
        self.num_experts = num_experts
        self.in_features = in_features
        self.activation = activation
        self.dropout = dropout

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None = None) -> jax.Array:
        E, n_in, H = self.num_experts, self.in_features, self.out_features
        if train and self.dropout > 0.0 and key is None:
            raise ValueError("BoostExpertBank: dropout > 0 needs a `key` while training")
        dt = x.dtype
        kernels = [layer.kernel[...].astype(dt) for layer in self.mlp.layers]  # [E, in, out] each
        biases = [layer.bias[...].astype(dt) for layer in self.mlp.layers]  # [E, out] each
        alphas = [None if a is None else a.alpha[...].astype(dt) for a in self.mlp.acts]
        # The part of every expert's first layer that reads x: all experts at once, off the chain.
        from_x = jnp.einsum("bi,eio->ebo", x, kernels[0][:, :n_in])  # [E, B, H1]
        from_x = from_x + biases[0][:, None]

        def act(h, alpha):
            if self.activation == "relu":
                return jax.nn.relu(h)
            if self.activation == "prelu":
                return jnp.where(h > 0, h, alpha * h)
            return h

        def drop(h, layer, e):
            if not (train and self.dropout > 0.0):
                return h
            k = jax.random.fold_in(jax.random.fold_in(key, layer), e)
            keep = jax.random.bernoulli(k, 1 - self.dropout, h.shape)
            return jnp.where(keep, h / (1 - self.dropout), 0).astype(h.dtype)

        def expert_step(prev, xs):  # prev: [B, H], expert e-1's output (zeros for e = 0)
            e, h, prev_kernel, ks, bs, als = xs
            h = act(h + prev @ prev_kernel, als[0])  # [B, H1]
            h = drop(h, 0, e)
            for j, (k, b) in enumerate(zip(ks, bs)):
                h = drop(act(h @ k + b, als[j + 1]), j + 1, e)
            return h, h  # [B, H]

        xs = (
            jnp.arange(E),
            from_x,
            kernels[0][:, n_in:],  # [E, H, H1]: the rows that read the previous expert
            tuple(kernels[1:]),
            tuple(biases[1:]),
            tuple(alphas),
        )
        init = jnp.zeros((x.shape[0], H), dt)
        _, outs = jax.lax.scan(expert_step, init, xs)  # [E, B, H]
        return jnp.swapaxes(outs, 0, 1)  # [B, E, H]
