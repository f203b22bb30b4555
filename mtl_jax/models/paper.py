"""The paper's models: MMoE plus its multi-perspective attention options, as one assembly.

Every variant of the paper's Table 2 is "MMoE plus X", and its last row combines four of them, so
there is one configurable model, ``PaperMMoE`` (registered as ``paper_mmoe``), and one registered
name per row that fixes the option the row is about:

===================== ============================================== ===========================
name                  fixed options                                  paper
===================== ============================================== ===========================
``coarse_attention``  gate_type=coarse_attention                     3.1, ``attention_gates.py``
``fine_attention``    gate_type=fine_attention                       3.2, ``attention_gates.py``
``boost_experts``     expert_mode=boost                              3.3, ``boost_experts.py``
``expert_attention``  expert_interaction=self_attention              3.4, ``expert_attention.py``
``feature_attention`` feature_attention=True                         3.4, ``feature_attention.py``
``sequence_mmoe``     use_sequence=True                              3.5, ``din.py``
``multisource``       multisource=True                               3.6, ``multisource.py``
``paper_full``        coarse_attention + self_attention + sequence   Table 2, last row
                      + multisource
===================== ============================================== ===========================

A registered name's fixed options win over the defaults; setting one of them to another value in
``config.model`` is an error (use ``paper_mmoe`` to combine options freely).

Data flow (B batch, F fields, D embed, E experts, H expert width, T tasks)::

    InputLayer ─► flat [B, ΣD+N]  (or feature self-attention over fields [B, F, D], flattened)
               └► DIN interest [B, D'] joined to it               (use_sequence)
    x [B, I] ─► per-source feature-space mapping [B, shared_dim]  (multisource; + discriminator)
    x ─► experts [B, E, H]  (parallel bank, or boosting chain)
       ─► auto interact layer [B, E, H]                          (expert_interaction)
       ─► per-task gate: softmax(x) | coarse | fine attention ─► [B, T, H] ─► towers ─► [B, T]

Config keys (``config.model``, with defaults): ``gate_type`` (``softmax``), ``expert_mode``
(``parallel``), ``expert_interaction`` (``none``), ``interaction_combine`` (``product``),
``feature_attention`` (False), ``use_sequence`` (False), ``multisource`` (False),
``attention_heads`` (4), ``attention_gate_hidden`` (()), ``attention_gate_norm``
(``softmax_scaled``; or ``softmax``, ``none``: ``attention_gates.py``), ``time_embedding_dim``
(8), ``location_embedding_dim`` (8), ``time_scale`` (7.0), ``time_features`` (``stabilised``; or
``literal``: ``din.py``), ``din_hidden`` ((36,)), ``din_activation`` (``sigmoid``),
``din_weight_norm`` (``softmax``; or ``none``: ``din.py``), ``shared_dim`` (128),
``mapping_hidden`` (()), ``discriminator_hidden`` ((64,)), ``adversarial_weight`` (0.1),
``adversarial_objective`` (``reversal``; or ``confusion``, see ``multisource.py``), besides
MMoE's ``embed_dim``, ``num_experts``, ``expert_hidden``, ``gate_hidden`` (the softmax gates'
layers only; the attention gates' are ``attention_gate_hidden``), ``tower_hidden``,
``expert_activation``, ``tower_activation`` and ``dropout``. These keys are checked here, when
the model is built; each error names its key.

Choices where the paper does not say (the per-part choices are in each part's module docstring):

* The DIN interest vector is joined to the flat input before the multi-source mapping, so the
  mapping aligns every expert input across sources, the sequence part included.
* With multisource the experts and the softmax gates read only the shared representation (the
  paper projects "the heterogeneous data into the same feature space" for the experts to share).
* The attention gates (coarse, fine) take the experts' output after the auto interact layer.
* Multisource on single-source data (``schema.num_sources`` = 1, e.g. prepared Ali-CCP without a
  source field) trains: one feature-space mapping serves every row (a shared linear map to
  ``shared_dim``), and the discriminator has one class, so its cross-entropy is 0 and the
  adversarial term sends no gradient. ``mtl_jax.config_check`` says so in the log.

Returns ``logits`` [B, T] and ``gates`` [B, T, E]; with fine attention also ``fine_gates``
[B, T, E, H]; with multisource ``aux_loss`` (the discriminator cross-entropy, behind the gradient
reversal) and ``aux_metrics`` ``{"disc_loss", "disc_accuracy"}``; with a sequence ``seq_weights``
[B, L].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mtl_jax.models.attention_gates import GATE_NORMS, CoarseAttentionGates, FineAttentionGates
from mtl_jax.models.boost_experts import BoostExpertBank
from mtl_jax.models.din import DIN_ACTIVATIONS, TIME_FEATURES, WEIGHT_NORMS, SequenceInterest
from mtl_jax.models.embedding import InputLayer
from mtl_jax.models.expert_attention import COMBINES, ExpertAttentionLayer
from mtl_jax.models.experts import ExpertBank
from mtl_jax.models.feature_attention import FeatureAttentionLayer
from mtl_jax.models.gates import SoftmaxGates
from mtl_jax.models.multisource import OBJECTIVES, FeatureSpaceMapping, SourceDiscriminator
from mtl_jax.models.registry import register
from mtl_jax.models.towers import Towers

GATE_TYPES = ("softmax", "coarse_attention", "fine_attention")
EXPERT_MODES = ("parallel", "boost")
INTERACTIONS = ("none", "self_attention")

DEFAULTS = dict(
    gate_type="softmax",
    expert_mode="parallel",
    expert_interaction="none",
    interaction_combine="product",
    feature_attention=False,
    use_sequence=False,
    multisource=False,
    attention_heads=4,
    attention_gate_hidden=(),
    attention_gate_norm="softmax_scaled",
    time_embedding_dim=8,
    location_embedding_dim=8,
    time_scale=7.0,
    time_features="stabilised",
    din_hidden=(36,),
    din_activation="sigmoid",
    din_weight_norm="softmax",
    shared_dim=128,
    mapping_hidden=(),
    discriminator_hidden=(64,),
    adversarial_weight=0.1,
    adversarial_objective="reversal",
)


def _choice(opts: dict, key: str, allowed) -> str:
    if opts[key] not in allowed:
        raise ValueError(f"config.model.{key} must be one of {allowed}, got {opts[key]!r}")
    return opts[key]


def _flag(opts: dict, key: str) -> bool:
    if not isinstance(opts[key], bool):
        raise ValueError(f"config.model.{key} must be True or False, got {opts[key]!r}")
    return opts[key]


def _positive_int(opts: dict, key: str) -> int:
    v = opts[key]
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"config.model.{key} must be a positive integer, got {v!r}")
    return v


def _widths(opts: dict, key: str) -> tuple[int, ...]:
    v = opts[key]
    if not isinstance(v, (tuple, list)) or any(
        not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in v
    ):
        raise ValueError(f"config.model.{key} must be a list of positive widths, got {v!r}")
    return tuple(v)


def _non_negative(opts: dict, key: str) -> float:
    v = opts[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
        raise ValueError(f"config.model.{key} must be a number >= 0, got {v!r}")
    return float(v)


def _positive_number(opts: dict, key: str) -> float:
    v = opts[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise ValueError(f"config.model.{key} must be a number > 0, got {v!r}")
    return float(v)


def resolve_options(cfg, name: str, fixed: dict) -> dict:
    """The paper options of ``config.model``: defaults, then the config, then ``fixed``."""
    opts = {key: cfg.get(key, default) for key, default in DEFAULTS.items()}
    for key, value in fixed.items():
        if key in cfg and cfg[key] != value:
            raise ValueError(
                f"config.model.{key}={cfg[key]!r} conflicts with config.model.name={name!r}, which "
                f"fixes {key}={value!r}; use config.model.name='paper_mmoe' to combine options"
            )
        opts[key] = value
    return opts


@register("paper_mmoe")
class PaperMMoE(nnx.Module):
    """MMoE with the paper's options (see the module docstring)."""

    fixed: dict = {}

    def __init__(self, schema, cfg, *, rngs: nnx.Rngs):
        opts = resolve_options(cfg, cfg.get("name", "paper_mmoe"), self.fixed)
        self.gate_type = _choice(opts, "gate_type", GATE_TYPES)
        self.expert_mode = _choice(opts, "expert_mode", EXPERT_MODES)
        self.expert_interaction = _choice(opts, "expert_interaction", INTERACTIONS)
        combine = _choice(opts, "interaction_combine", COMBINES)
        self.feature_attention = _flag(opts, "feature_attention")
        self.use_sequence = _flag(opts, "use_sequence")
        self.multisource = _flag(opts, "multisource")
        heads = _positive_int(opts, "attention_heads")
        T, E, H = schema.num_tasks, cfg.num_experts, cfg.expert_hidden[-1]
        self.num_tasks = T

        if self.use_sequence and schema.sequence is None:
            raise ValueError(
                "config.model.use_sequence=True needs a behaviour sequence, but the data has none "
                "(set config.data.synthetic.sequence=True)"
            )
        self.inputs = InputLayer(schema, cfg.embed_dim, use_sequence=self.use_sequence, rngs=rngs)
        in_dim = self.inputs.flat_dim

        if self.feature_attention:
            if not self.inputs.uniform:
                raise ValueError(
                    "config.model.feature_attention=True needs every categorical field to have "
                    f"the same embedding width, but the schema's widths are "
                    f"{sorted(set(self.inputs.field_dims))}"
                )
            self.field_attention = FeatureAttentionLayer(
                self.inputs.field_dims[0], heads, rngs=rngs
            )

        if self.use_sequence:
            seq = schema.sequence
            self.din = SequenceInterest(
                self.inputs.item_dim,
                seq.num_locations,
                time_dim=_positive_int(opts, "time_embedding_dim"),
                location_dim=_positive_int(opts, "location_embedding_dim"),
                hidden=_widths(opts, "din_hidden"),
                activation=_choice(opts, "din_activation", DIN_ACTIVATIONS),
                time_scale=_positive_number(opts, "time_scale"),
                weight_norm=_choice(opts, "din_weight_norm", WEIGHT_NORMS),
                time_kind=_choice(opts, "time_features", TIME_FEATURES),
                rngs=rngs,
            )
            in_dim += self.din.out_features

        if self.multisource:  # one source: one shared map, an inert discriminator (docstring)
            shared_dim = _positive_int(opts, "shared_dim")
            self.mapping = FeatureSpaceMapping(
                schema.num_sources,
                in_dim,
                shared_dim,
                _widths(opts, "mapping_hidden"),
                rngs=rngs,
            )
            self.discriminator = SourceDiscriminator(
                schema.num_sources,
                shared_dim,
                _widths(opts, "discriminator_hidden"),
                adversarial_weight=_non_negative(opts, "adversarial_weight"),
                objective=_choice(opts, "adversarial_objective", OBJECTIVES),
                rngs=rngs,
            )
            in_dim = shared_dim

        expert_cls = BoostExpertBank if self.expert_mode == "boost" else ExpertBank
        self.experts = expert_cls(
            E,
            in_dim,
            cfg.expert_hidden,
            activation=cfg.expert_activation,
            dropout=cfg.dropout,
            rngs=rngs,
        )
        if self.expert_interaction == "self_attention":
            self.interaction = ExpertAttentionLayer(H, heads, combine, rngs=rngs)
        if self.gate_type == "softmax":
            self.gates = SoftmaxGates(T, in_dim, E, cfg.gate_hidden, rngs=rngs)
        else:
            if tuple(cfg.gate_hidden):
                raise ValueError(
                    f"config.model.gate_hidden={tuple(cfg.gate_hidden)} sizes the softmax gates, "
                    f"which gate_type={self.gate_type!r} does not have; the attention gates' "
                    "layers are config.model.attention_gate_hidden"
                )
            gate_cls = (
                CoarseAttentionGates if self.gate_type == "coarse_attention" else FineAttentionGates
            )
            self.gates = gate_cls(
                T,
                E,
                H,
                _widths(opts, "attention_gate_hidden"),
                norm=_choice(opts, "attention_gate_norm", GATE_NORMS),
                rngs=rngs,
            )
        self.towers = Towers(
            T,
            H,
            cfg.tower_hidden,
            activation=cfg.tower_activation,
            dropout=cfg.dropout,
            rngs=rngs,
        )

    def __call__(self, batch, *, train: bool, key: jax.Array | None = None) -> dict:
        inp = self.inputs(batch)
        out: dict = {}
        if self.feature_attention:
            fields, _ = self.field_attention(inp["fields"])  # [B, F, D]
            x = jnp.concatenate([fields.reshape(fields.shape[0], -1), inp["dense"]], axis=-1)
        else:
            x = inp["flat"]  # [B, ΣD+N]
        if self.use_sequence:
            interest, out["seq_weights"] = self.din(inp, train=train)  # [B, D'], [B, L]
            x = jnp.concatenate([x, interest], axis=-1)  # [B, I]
        if self.multisource:
            source = batch["source"]  # [B]
            x = self.mapping(x, source, train=train)  # [B, shared_dim]
            out["aux_loss"], out["aux_metrics"] = self.discriminator(
                x, source, train=train, valid=batch.get("valid")
            )
        ekey = None if key is None else jax.random.fold_in(key, 1)
        experts = self.experts(x, train=train, key=ekey)  # [B, E, H]
        if self.expert_interaction == "self_attention":
            experts, _ = self.interaction(experts)  # [B, E, H]
        if self.gate_type == "softmax":
            gates = self.gates(x, train=train)  # [B, T, E]
            mixed = jnp.einsum("bte,beh->bth", gates.astype(experts.dtype), experts)  # [B, T, H]
        elif self.gate_type == "coarse_attention":
            mixed, gates = self.gates(experts)  # [B, T, H], [B, T, E]
        else:
            mixed, gates, out["fine_gates"] = self.gates(experts)  # ..., [B, T, E, H]
        tkey = None if key is None else jax.random.fold_in(key, 2)
        out["logits"] = self.towers(mixed, train=train, key=tkey)  # [B, T]
        out["gates"] = gates
        return out


@register("coarse_attention")
class CoarseAttention(PaperMMoE):
    """Section 3.1: coarse-grained attention gates."""

    fixed = {"gate_type": "coarse_attention"}


@register("fine_attention")
class FineAttention(PaperMMoE):
    """Section 3.2: fine-grained attention gates."""

    fixed = {"gate_type": "fine_attention"}


@register("boost_experts")
class BoostExperts(PaperMMoE):
    """Section 3.3: gradient-boosting experts."""

    fixed = {"expert_mode": "boost"}


@register("expert_attention")
class ExpertAttention(PaperMMoE):
    """Section 3.4: the auto interact layer over the experts."""

    fixed = {"expert_interaction": "self_attention"}


@register("feature_attention")
class FeatureAttention(PaperMMoE):
    """Section 3.4: feature-level self-attention before the experts."""

    fixed = {"feature_attention": True}


@register("sequence_mmoe")
class SequenceMMoE(PaperMMoE):
    """Section 3.5: MMoE with the DIN-pooled behaviour sequence."""

    fixed = {"use_sequence": True}


@register("multisource")
class Multisource(PaperMMoE):
    """Section 3.6: feature-space mapping and source discriminator."""

    fixed = {"multisource": True}


@register("paper_full")
class PaperFull(PaperMMoE):
    """Table 2's last row: coarse attention + auto interact layer + sequence + improved loss."""

    fixed = {
        "gate_type": "coarse_attention",
        "expert_interaction": "self_attention",
        "use_sequence": True,
        "multisource": True,
    }
