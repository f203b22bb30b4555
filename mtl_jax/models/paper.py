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
``expert_activation``, ``tower_activation`` and ``dropout``. ``PaperMMoE.read_options`` reads
and checks them (``OPTIONS``), when the model is built and, before that, in
``mtl_jax.config_check``; each error names its key.

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

import dataclasses
import functools

import jax.numpy as jnp
from flax import nnx

from mtl_jax.models.assembly import Assembly, fold
from mtl_jax.models.attention_gates import GATE_NORMS, CoarseAttentionGates, FineAttentionGates
from mtl_jax.models.boost_experts import BOOST_ACTIVATIONS, BoostExpertBank
from mtl_jax.models.din import DIN_ACTIVATIONS, TIME_FEATURES, WEIGHT_NORMS, SequenceInterest
from mtl_jax.models.embedding import InputLayer, field_dims
from mtl_jax.models.expert_attention import COMBINES, ExpertAttentionLayer
from mtl_jax.models.experts import ExpertBank
from mtl_jax.models.feature_attention import FeatureAttentionLayer
from mtl_jax.models.gates import SoftmaxGates
from mtl_jax.models.multisource import OBJECTIVES, FeatureSpaceMapping, SourceDiscriminator
from mtl_jax.models.options import ModelOptions, choice, flag, number, positive_int, widths
from mtl_jax.models.registry import register

GATE_TYPES = ("softmax", "coarse_attention", "fine_attention")
EXPERT_MODES = ("parallel", "boost")
INTERACTIONS = ("none", "self_attention")


def _one_of(allowed: tuple[str, ...]):
    return functools.partial(choice, allowed=allowed)


# The paper's keys of config.model: key → (default, read(value, key) → the checked value).
OPTIONS = dict(
    gate_type=("softmax", _one_of(GATE_TYPES)),
    expert_mode=("parallel", _one_of(EXPERT_MODES)),
    expert_interaction=("none", _one_of(INTERACTIONS)),
    interaction_combine=("product", _one_of(COMBINES)),
    feature_attention=(False, flag),
    use_sequence=(False, flag),
    multisource=(False, flag),
    attention_heads=(4, positive_int),
    attention_gate_hidden=((), widths),
    attention_gate_norm=("softmax_scaled", _one_of(GATE_NORMS)),
    time_embedding_dim=(8, positive_int),
    location_embedding_dim=(8, positive_int),
    time_scale=(7.0, functools.partial(number, positive=True)),
    time_features=("stabilised", _one_of(TIME_FEATURES)),
    din_hidden=((36,), widths),
    din_activation=("sigmoid", _one_of(DIN_ACTIVATIONS)),
    din_weight_norm=("softmax", _one_of(WEIGHT_NORMS)),
    shared_dim=(128, positive_int),
    mapping_hidden=((), widths),
    discriminator_hidden=((64,), widths),
    adversarial_weight=(0.1, number),
    adversarial_objective=("reversal", _one_of(OBJECTIVES)),
)


@dataclasses.dataclass(frozen=True)
class PaperOptions(ModelOptions):
    """``ModelOptions`` plus the paper's keys (``OPTIONS``), checked."""

    gate_type: str
    expert_mode: str
    expert_interaction: str
    interaction_combine: str
    feature_attention: bool
    use_sequence: bool
    multisource: bool
    attention_heads: int
    attention_gate_hidden: tuple[int, ...]
    attention_gate_norm: str
    time_embedding_dim: int
    location_embedding_dim: int
    time_scale: float
    time_features: str
    din_hidden: tuple[int, ...]
    din_activation: str
    din_weight_norm: str
    shared_dim: int
    mapping_hidden: tuple[int, ...]
    discriminator_hidden: tuple[int, ...]
    adversarial_weight: float
    adversarial_objective: str


def _read_paper_options(cfg, fixed: dict) -> PaperOptions:
    """Defaults, then ``cfg`` (``config.model``), then ``fixed`` (the registered name's)."""
    opts = ModelOptions.read(cfg)
    values = {key: cfg.get(key, default) for key, (default, _) in OPTIONS.items()}
    for key, value in fixed.items():
        if key in cfg and cfg[key] != value:
            raise ValueError(
                f"config.model.{key}={cfg[key]!r} conflicts with config.model.name={cfg.name!r}, "
                f"which fixes {key}={value!r}; use config.model.name='paper_mmoe' to combine "
                "options"
            )
        values[key] = value
    return opts.extend(
        PaperOptions,
        **{key: read(values[key], f"config.model.{key}") for key, (_, read) in OPTIONS.items()},
    )


def _check_inputs(opts: PaperOptions, schema) -> None:
    """The options that need something of the data."""
    if opts.use_sequence and schema.sequence is None:
        raise ValueError(
            "config.model.use_sequence=True needs a behaviour sequence, but the data has none "
            "(set config.data.synthetic.sequence=True)"
        )
    if opts.feature_attention:
        dims = field_dims(schema, opts.embed_dim)
        if len(set(dims)) != 1:
            raise ValueError(
                "config.model.feature_attention=True needs every categorical field to have the "
                f"same embedding width, but the schema's widths are {sorted(set(dims))}"
            )
        if dims[0] % opts.attention_heads:
            raise ValueError(
                f"config.model.attention_heads={opts.attention_heads} must divide the field "
                f"embedding width config.model.embed_dim={dims[0]} when "
                "config.model.feature_attention is set"
            )


def _check_mixture(opts: PaperOptions) -> None:
    """The options of the experts and the gates that depend on one another."""
    width = opts.expert_hidden[-1]
    if opts.expert_interaction == "self_attention" and width % opts.attention_heads:
        raise ValueError(
            f"config.model.attention_heads={opts.attention_heads} must divide the experts' output "
            f"width config.model.expert_hidden[-1]={width}"
        )
    if opts.expert_mode == "boost" and opts.expert_activation not in BOOST_ACTIVATIONS:
        raise ValueError(
            f"config.model.expert_activation must be one of {BOOST_ACTIVATIONS} with "
            f"config.model.expert_mode='boost', got {opts.expert_activation!r}"
        )
    if opts.gate_type != "softmax" and opts.gate_hidden:
        raise ValueError(
            f"config.model.gate_hidden={opts.gate_hidden} sizes the softmax gates, which "
            f"gate_type={opts.gate_type!r} does not have; the attention gates' layers are "
            "config.model.attention_gate_hidden"
        )


@register("paper_mmoe")
class PaperMMoE(Assembly):
    """MMoE with the paper's options (see the module docstring)."""

    fixed: dict = {}

    @classmethod
    def read_options(cls, cfg, schema) -> PaperOptions:
        opts = _read_paper_options(cfg, cls.fixed)
        _check_inputs(opts, schema)
        _check_mixture(opts)
        return opts

    def build_inputs(self, schema, opts: PaperOptions, *, rngs: nnx.Rngs) -> InputLayer:
        return InputLayer(schema, opts.embed_dim, use_sequence=opts.use_sequence, rngs=rngs)

    def build_bottom(self, schema, opts: PaperOptions, in_features: int, *, rngs: nnx.Rngs) -> int:
        self.num_tasks = schema.num_tasks
        self.gate_type = opts.gate_type
        self.expert_interaction = opts.expert_interaction
        self.feature_attention = opts.feature_attention
        self.use_sequence = opts.use_sequence
        self.multisource = opts.multisource
        in_features = self._build_expert_input(schema, opts, in_features, rngs=rngs)
        return self._build_mixture(schema, opts, in_features, rngs=rngs)

    def _build_expert_input(self, schema, opts: PaperOptions, in_features: int, *, rngs) -> int:
        """Feature attention, the sequence's interest, the source mapping; the experts' width I."""
        if opts.feature_attention:
            self.field_attention = FeatureAttentionLayer(
                self.inputs.field_dims[0], opts.attention_heads, rngs=rngs
            )
        if opts.use_sequence:
            self.din = SequenceInterest(
                self.inputs.item_dim,
                schema.sequence.num_locations,
                time_dim=opts.time_embedding_dim,
                location_dim=opts.location_embedding_dim,
                hidden=opts.din_hidden,
                activation=opts.din_activation,
                time_scale=opts.time_scale,
                weight_norm=opts.din_weight_norm,
                time_kind=opts.time_features,
                rngs=rngs,
            )
            in_features += self.din.out_features
        if opts.multisource:  # one source: one shared map, an inert discriminator (docstring)
            self.mapping = FeatureSpaceMapping(
                schema.num_sources, in_features, opts.shared_dim, opts.mapping_hidden, rngs=rngs
            )
            self.discriminator = SourceDiscriminator(
                schema.num_sources,
                opts.shared_dim,
                opts.discriminator_hidden,
                adversarial_weight=opts.adversarial_weight,
                objective=opts.adversarial_objective,
                rngs=rngs,
            )
            in_features = opts.shared_dim
        return in_features

    def _build_mixture(self, schema, opts: PaperOptions, in_features: int, *, rngs) -> int:
        """The experts, their interaction and the gates; returns the experts' width H."""
        T, E, H = schema.num_tasks, opts.num_experts, opts.expert_hidden[-1]
        expert_cls = BoostExpertBank if opts.expert_mode == "boost" else ExpertBank
        self.experts = expert_cls(
            E,
            in_features,
            opts.expert_hidden,
            activation=opts.expert_activation,
            dropout=opts.dropout,
            rngs=rngs,
        )
        if opts.expert_interaction == "self_attention":
            self.interaction = ExpertAttentionLayer(
                H, opts.attention_heads, opts.interaction_combine, rngs=rngs
            )
        if opts.gate_type == "softmax":
            self.gates = SoftmaxGates(T, in_features, E, opts.gate_hidden, rngs=rngs)
        else:
            gate_cls = (
                CoarseAttentionGates if opts.gate_type == "coarse_attention" else FineAttentionGates
            )
            self.gates = gate_cls(
                T, E, H, opts.attention_gate_hidden, norm=opts.attention_gate_norm, rngs=rngs
            )
        return H

    def _expert_input(self, batch, inputs: dict, out: dict, *, train: bool):
        if self.feature_attention:
            fields, _ = self.field_attention(inputs["fields"])  # [B, F, D]
            x = jnp.concatenate([fields.reshape(fields.shape[0], -1), inputs["dense"]], axis=-1)
        else:
            x = inputs["flat"]  # [B, ΣD+N]
        if self.use_sequence:
            interest, out["seq_weights"] = self.din(inputs, train=train)  # [B, D'], [B, L]
            x = jnp.concatenate([x, interest], axis=-1)  # [B, I]
        if self.multisource:
            source = batch["source"]  # [B]
            x = self.mapping(x, source, train=train)  # [B, shared_dim]
            out["aux_loss"], out["aux_metrics"] = self.discriminator(
                x, source, train=train, valid=batch.get("valid")
            )
        return x

    def run_bottom(self, batch, inputs, out, *, train, key):
        x = self._expert_input(batch, inputs, out, train=train)  # [B, I]
        experts = self.experts(x, train=train, key=fold(key, 1))  # [B, E, H]
        if self.expert_interaction == "self_attention":
            experts, _ = self.interaction(experts)  # [B, E, H]
        if self.gate_type == "softmax":
            gates = self.gates(x, train=train)  # [B, T, E]
            mixed = jnp.einsum("bte,beh->bth", gates.astype(experts.dtype), experts)  # [B, T, H]
        elif self.gate_type == "coarse_attention":
            mixed, gates = self.gates(experts)  # [B, T, H], [B, T, E]
        else:
            mixed, gates, out["fine_gates"] = self.gates(experts)  # ..., [B, T, E, H]
        out["gates"] = gates
        return mixed

    def tower_key(self, key):
        return fold(key, 2)


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
