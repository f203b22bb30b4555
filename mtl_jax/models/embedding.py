"""Input layer: every categorical id (and every behaviour-sequence item) in one fused gather.

All tables of the same width live in one parameter ``tables["d{D}"]`` of shape ``[rows, D]``;
each field reads its own row range through a static offset. One gather per width replaces F
separate lookups, and the optimizer sees one array per width (cheap to update sparsely and to
shard by rows). Fields that share a table (sequence items and the target item) share rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from flax import nnx

if TYPE_CHECKING:  # models/ depends on jax and flax only; the schema is duck-typed here.
    from mtl_jax.data.schema import Schema


def table_layout(schema: Schema, embed_dim: int) -> dict[str, tuple[str, int]]:
    """Table name → (fused parameter key, row offset inside it)."""
    dims = schema.table_dims(embed_dim)
    cursor: dict[str, int] = {}
    layout = {}
    for name, size in schema.tables().items():
        key = f"d{dims[name]}"
        layout[name] = (key, cursor.get(key, 0))
        cursor[key] = cursor.get(key, 0) + size
    return layout


# Fused tables are padded to a multiple of this many rows so that they can be split by rows
# over any mesh axis size that divides it (see sharding.EMBEDDING_ROW_RULES).
ROW_MULTIPLE = 1024


def fused_rows(schema: Schema, embed_dim: int) -> dict[str, int]:
    """Fused parameter key → its number of rows (padded to a multiple of ``ROW_MULTIPLE``)."""
    dims = schema.table_dims(embed_dim)
    rows: dict[str, int] = {}
    for name, size in schema.tables().items():
        key = f"d{dims[name]}"
        rows[key] = rows.get(key, 0) + size
    return {k: -(-r // ROW_MULTIPLE) * ROW_MULTIPLE for k, r in rows.items()}


def field_dims(schema: Schema, embed_dim: int) -> tuple[int, ...]:
    """The embedding width of every categorical field, in schema order."""
    dims = schema.table_dims(embed_dim)
    return tuple(dims[f.table_name] for f in schema.categorical)


class InputLayer(nnx.Module):
    """Embeds a batch.

    Returns a dict with
      ``fields``  [B, F, D]  field embeddings (only when there are fields and every field has
                             width D, else absent),
      ``flat``    [B, ΣD+N]  field embeddings and dense features, concatenated,
      ``dense``   [B, N],
    and with ``use_sequence`` (the model reads the behaviour sequence) also ``seq`` [B, L, D]
    item embeddings, ``seq_mask`` [B, L]
    (True = real item), ``target`` [B, D] the target item's embedding, ``seq_days`` [B, L] and
    ``seq_loc`` [B, L].
    """

    def __init__(
        self,
        schema: Schema,
        embed_dim: int,
        *,
        use_sequence: bool = False,
        init_std: float = 0.02,
        rngs: nnx.Rngs,
    ):
        if use_sequence and schema.sequence is None:
            raise ValueError("this model needs a behaviour sequence, but the data schema has none")
        self.schema = schema
        self.use_sequence = use_sequence
        self.embed_dim = embed_dim
        layout = table_layout(schema, embed_dim)
        dims = schema.table_dims(embed_dim)
        self.tables = nnx.Dict(
            {
                key: nnx.Param(
                    init_std
                    * jax.random.truncated_normal(rngs.params(), -2, 2, (rows, int(key[1:])))
                )
                for key, rows in fused_rows(schema, embed_dim).items()
            }
        )
        # Static gather plan: for each width, which fields read it and at which offsets.
        self.plan = []
        for key in fused_rows(schema, embed_dim):
            idx = [i for i, f in enumerate(schema.categorical) if layout[f.table_name][0] == key]
            offs = [layout[schema.categorical[i].table_name][1] for i in idx]
            self.plan.append((key, tuple(idx), tuple(offs)))
        self.field_dims = field_dims(schema, embed_dim)
        self.uniform = len(set(self.field_dims)) == 1
        if schema.sequence is not None:
            self.seq_key, self.seq_offset = layout[schema.sequence.table]
            self.target_index = schema.field_index(schema.sequence.target)
            self.item_dim = dims[schema.sequence.table]

    @property
    def flat_dim(self) -> int:
        return sum(self.field_dims) + self.schema.num_dense

    def row_ids(self, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Fused-table key → the global row ids this batch reads, [B, Fk (+ L)].

        Fields come first, in schema order; the behaviour sequence (when used) is appended to its
        table's ids. The train step uses this to update only the rows a batch touches
        (``touched_rows.host_row_ids`` is its numpy twin for the input pipeline).
        """
        cat = batch["cat"]  # [B, F]
        out = {}
        for key, idx, offs in self.plan:
            if idx == tuple(range(idx[0], idx[0] + len(idx))):  # contiguous: a slice, no gather
                ids = cat[:, idx[0] : idx[0] + len(idx)]
            else:
                ids = cat[:, jnp.asarray(idx)]
            ids = ids + jnp.asarray(offs, dtype=cat.dtype)  # [B, Fk]
            if self.use_sequence and key == self.seq_key:
                ids = jnp.concatenate([ids, batch["seq_item"] + self.seq_offset], axis=1)
            out[key] = ids
        return out

    def __call__(self, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Embeds ``batch``.

        Outputs are in the dtype of ``batch["dense"]`` (the train/eval steps cast it to
        ``config.compute_dtype``), so bfloat16 compute starts here while the tables stay float32.

        If the batch carries ``embedding_rows`` (key → ids into the current tables), those ids are
        used instead of ``row_ids(batch)``: the train step swaps each table for the compact block of
        rows the batch touches and passes the ids into that block.
        """
        cat = batch["cat"]  # [B, F]
        rows = batch.get("embedding_rows") or self.row_ids(batch)
        out: dict[str, jax.Array] = {}
        per_field: list[jax.Array | None] = [None] * self.schema.num_fields
        seq = None
        dtype = batch["dense"].dtype  # the step casts dense features to the compute dtype
        # Ids into the compact block are in bounds by construction: no out-of-bounds select.
        mode = "promise_in_bounds" if "embedding_rows" in batch else "fill"
        for key, idx, _ in self.plan:
            emb = self.tables[key][...].at[rows[key]].get(mode=mode).astype(dtype)  # [B, Fk+L, Dk]
            if self.use_sequence and key == self.seq_key:
                L = batch["seq_item"].shape[1]
                seq, emb = emb[:, -L:], emb[:, :-L]
            for j, i in enumerate(idx):
                per_field[i] = emb[:, j]
        dense = batch["dense"]
        if not per_field:  # dense-only data
            out["flat"] = dense
        else:
            if self.uniform and len(self.plan) == 1:
                # One table read by every field in schema order: the gather is already [B, F, D]
                # (slicing it per field and stacking again costs a copy forward and a sum of
                # padded slices backward).
                out["fields"] = emb
                flat_emb = emb.reshape(cat.shape[0], -1)
            elif self.uniform:
                out["fields"] = jnp.stack(per_field, axis=1)  # [B, F, D]
                flat_emb = out["fields"].reshape(cat.shape[0], -1)
            else:
                flat_emb = jnp.concatenate(per_field, axis=-1)
            out["flat"] = jnp.concatenate([flat_emb, dense], axis=-1)
        out["dense"] = dense
        if self.use_sequence:
            out["seq"] = seq  # [B, L, D]
            out["seq_mask"] = batch["seq_item"] > 0
            out["target"] = per_field[self.target_index]
            out["seq_days"] = batch["seq_days"]
            out["seq_loc"] = batch["seq_loc"]
        return out
