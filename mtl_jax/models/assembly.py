"""The skeleton every assembly model shares: inputs → bottom → per-task towers → outputs.

A model says only what differs. ``read_options`` reads its ``config.model`` keys (the shared ones
by default); ``build_bottom`` builds what sits between the embeddings and the towers and returns
the towers' input width; ``run_bottom`` runs it and returns the towers' input [B, T, H]. The input
layer (``build_inputs``), the top (``build_top``, ``run_top``: ``Towers`` giving ``logits``) and
the towers' dropout key (``tower_key``: the step's key) have defaults a model may replace.

Parameters are created in the order inputs, bottom, top, and their paths are the attribute names
the hooks set (``inputs``, the bottom's own, ``towers``), so a model written on this skeleton has
the parameters it had when it was written out in full.
"""

from __future__ import annotations

import jax
from flax import nnx

from mtl_jax.models.embedding import InputLayer
from mtl_jax.models.options import ModelOptions
from mtl_jax.models.towers import Towers


def fold(key: jax.Array | None, i: int) -> jax.Array | None:
    """``key`` folded with ``i``; None (no dropout) stays None."""
    return None if key is None else jax.random.fold_in(key, i)


class Assembly(nnx.Module):
    """Built as ``cls(schema, cfg, rngs=rngs)``, called as ``model(batch, train=..., key=...)``."""

    def __init__(self, schema, cfg, *, rngs: nnx.Rngs):
        opts = self.read_options(cfg, schema)
        self.inputs = self.build_inputs(schema, opts, rngs=rngs)
        width = self.build_bottom(schema, opts, self.inputs.flat_dim, rngs=rngs)
        self.build_top(schema, opts, width, rngs=rngs)

    @classmethod
    def read_options(cls, cfg, schema) -> ModelOptions:
        """``config.model`` read and checked (``mtl_jax.config_check`` calls this too)."""
        del schema
        return ModelOptions.read(cfg)

    def build_inputs(self, schema, opts: ModelOptions, *, rngs: nnx.Rngs) -> InputLayer:
        return InputLayer(schema, opts.embed_dim, rngs=rngs)

    def build_bottom(self, schema, opts: ModelOptions, in_features: int, *, rngs: nnx.Rngs) -> int:
        """Sets the bottom's modules; returns the width H of the towers' input."""
        raise NotImplementedError(f"{type(self).__name__} does not build a bottom")

    def run_bottom(self, batch, inputs: dict, out: dict, *, train: bool, key) -> jax.Array:
        """The towers' input [B, T, H] from the ``InputLayer`` outputs; extra outputs go to
        ``out``."""
        raise NotImplementedError(f"{type(self).__name__} has no bottom")

    def build_top(self, schema, opts: ModelOptions, width: int, *, rngs: nnx.Rngs) -> None:
        self.towers = Towers(
            schema.num_tasks,
            width,
            opts.tower_hidden,
            activation=opts.tower_activation,
            dropout=opts.dropout,
            rngs=rngs,
        )

    def tower_key(self, key: jax.Array | None) -> jax.Array | None:
        return key

    def run_top(self, h: jax.Array, batch, out: dict, *, train: bool, key) -> None:
        """Writes ``logits`` [B, T] (and any other output of the top) into ``out``."""
        out["logits"] = self.towers(h, train=train, key=key)  # [B, T]

    def __call__(self, batch, *, train: bool, key: jax.Array | None = None) -> dict:
        out: dict = {}
        h = self.run_bottom(batch, self.inputs(batch), out, train=train, key=key)  # [B, T, H]
        self.run_top(h, batch, out, train=train, key=self.tower_key(key))
        return out
