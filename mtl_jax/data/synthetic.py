"""Synthetic Ali-CCP: the library's built-in dataset, drawn from a known latent model.

Rows have torch-rechub's Ali-CCP layout (23 categorical fields named by Ali-CCP field id, 8 dense
features in [0, 1], tasks ``click`` and ``order``) plus a DIN behaviour sequence and the true
probabilities ``p_true``, so oracle metrics (AUC / log-loss of ``p_true``) are exact.

API: ``SyntheticConfig`` (frozen, validated), ``synthetic_schema(cfg)``, ``LatentModel(cfg)``
(the per-user / per-item tables; ``.sample(n, rng)``), ``generate(cfg, split)`` (cached model,
rows seeded by ``(seed, split, chunk)``).

Generative model
----------------
Everything random but the rows is drawn once per configuration (``LatentModel``, seeded by
``cfg.seed``). Scales are in ``_W``.

* **Items.** Every item (205) belongs to one category (206; Zipf-sized; categories fall into 20
  clusters), one shop (207) and one intention node (210) of that category and usually one brand
  (216, missing for ~25% of items). Its latent vector is mostly its category's (cluster vector +
  a category part) plus a brand part and a small item-specific part, and likewise its bias, so
  items of the Zipf tail stay predictable from their category.
* **Users.** Profile fields 121–129 with Ali-CCP-like missing rates (~13% of users have no
  profile, 126 is missing for ~55%, 129 for ~36%); the user vector and bias are sums of
  profile-value effects plus a small user-specific part. 1–4 preferred categories and a behaviour
  history of ``U{0..max_seq_len}`` items (~85% from the preferred categories, popular items
  first), days-ago in [0, 14) (most recent first, 1/64-day steps) and a location id each, give
  the sequence (``seq_item`` / ``seq_days`` / ``seq_loc``, padded with 0 at the end), the interest
  vector ``h = Σ w_j v_j / Σ w_j`` with ``w_j = exp(-days_j / 3)``, and the 14-day aggregates:
  per key (category, shop, brand, intention) the top-4 values by recency-weighted count ``n``.
  The top value is the user field 109_14 / 110_14 / 127_14 / 150_14 and its weight
  ``log1p(n) / log1p(max_seq_len)`` (8-bit) the dense D109_14 / D110_14 / D127_14 / D150_14.
* **Combination fields** 508 / 509 / 702 / 853 are present (non-zero) only when the item's
  category / shop / brand / intention is among the user's top-4 values for that key; the id is a
  function of the value and D508 / D509 / D702 / D853 is the user's weight on it (0 if absent).

Per row only the source, the user (Zipf over users), the item (with probability 0.5 Zipf over
items, else one of the user's 16 personalised candidates: re-exposed history items and popular
items of the preferred categories) and the position 301 (ids 1–3) are drawn; every other field
is a function of them. With ``num_sources > 1`` the sources rank items differently and differ
in position mix and dense warps (``D ** gamma``) but share the label model.

Labels. Three components ``z_k`` (k = shared, click-specific, order-specific), each

    z_k = <a·u + m·h, v>_k + user_bias_k + item_bias_k + beta_k · dense + position_k

with independent parameters (position only in the shared and click parts; the interest matches
D508.. weigh most in ``beta``), are standardised to unit variance; with ρ = ``task_correlation``

    logit_click = b_click + γ (√ρ z_shared + √(1-ρ) z_click)
    logit_cvr   = b_cvr   + γ (√ρ z_shared + √(1-ρ) z_order)

``click ~ Bernoulli(σ(logit_click))``, ``order = click · Bernoulli(σ(logit_cvr))``,
``p_true = [p_click, p_click · p_cvr]``. ``b_click`` and ``b_cvr`` are set by bisection on a
calibration sample so that E[click] = ``click_rate`` and E[order | click] = ``cvr``. At the
defaults the oracle AUC is ~0.78 for click and ~0.76 for order-given-click.

Learnability. Most of the logit variance comes from effects a feature-crossing model can learn
from ~1M rows: additive profile / category-cluster / dense / position effects and the explicit
user × item crosses 508.. / D508... The bilinear user × item term and the sequence-only part of
the interest term are kept small (an MMoE gets within ~0.01 of the oracle click AUC); the latter
is what a sequence model (DIN) can add.

Phenomena. Each component of Wang, Zhang & Wulamu (2021) is motivated in their section 3 by a
property of the data; each property is a knob here, so a component can be tested where its
phenomenon is present and where it is not (``configs/phenomena.py`` names the settings; every
knob's default reproduces the earlier data bit for bit). Written down before any model ran on
them:

* ``interest_weight`` (default 0.25) and ``interest_decay_days`` (default 3): how much the labels
  depend on the user's recent behaviour sequence, and how fast that interest decays (the weight
  of the ``<h, v>`` term; the recency decay of ``h`` alone, the 14-day aggregates keep 3 days).
  Sequence MMoE, section 3.5: "The sequence feature can capture the correlation of user's
  behavior better ... we design the embeddings, which represent spatial information and time
  information." A model without the sequence sees only the 14-day aggregates and crosses.
* ``task_feature_split`` (default 0, at most 1): the task-specific label components draw on
  different feature groups: at 1 the click-specific part depends on user and context features
  only (user bias, behaviour-strength dense features, position) and the order-specific part on
  item features only (item bias); the shared part on everything. Attention gates, sections
  3.1–3.2: "Gate-improved attention is more associated with expert matching and more specific to
  task representation"; fine-grained attention "can better adapt the different correlation
  tasks".
* ``interaction_weight`` (default 0): adds κ · s_u · s_i to the shared component, the product of
  the standardised user bias (a sum over the profile fields) and item bias (category cluster,
  brand, item): a cross between what two groups of fields say on their own, which one expert
  reading one group cannot represent. Boosting experts, section 3.3: "In order to make
  different experts interact better"; the auto interact layer, section 3.4: "we regard the output
  of different experts as abstract high-level features, and design an interactive network
  layer"; feature self-attention (the same section) interacts the fields themselves.
* ``source_misalignment`` (default 0, with ``num_sources`` > 1): every source but the first
  shows the features the labels were made from through its own transform — dense features
  ``D ** γ`` with log γ ~ U(−a, a) per source and feature, and the position ids permuted — while
  the label function is shared. Improved loss, section 3.6: "Recommendation system has multiple
  scenarios, and the data is heterogeneous. Traditional multitask learning joint training
  requires data feature to be aligned ... we propose a feature space mapping operator." A model
  that does not read the source cannot undo the transform.
* ``user_item_weight`` (default 0.25): the weight of the bilinear user × item term, the part a
  model has to learn from the id embeddings' interaction: larger leaves more headroom between
  MMoE and the oracle.

Rates. The defaults (CTR 10%, CVR 10% of clicks, i.e. 1% orders per impression) are far above
Ali-CCP's (CTR 3.9%, CVR 0.54%, 0.021% orders per impression): at the real rates a 100k-row test
split holds ~20 orders, too few to measure an order AUC. Set ``click_rate=0.039, cvr=0.0054``
for Ali-CCP's rates.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import mmap
import typing

import numpy as np

from mtl_jax.data.schema import CategoricalFeature, Schema, SequenceFeature

# ---- layout -----------------------------------------------------------------------------------

#: Ali-CCP field id → (vocabulary size incl. id 0 at vocab_scale=1, group), in column order.
FIELDS: dict[str, tuple[int, str]] = {
    "101": (238635, "user"),
    "121": (98, "user"),
    "122": (14, "user"),
    "124": (3, "user"),
    "125": (8, "user"),
    "126": (4, "user"),
    "127": (4, "user"),
    "128": (3, "user"),
    "129": (5, "user"),
    "205": (467298, "item"),
    "206": (6929, "item"),
    "207": (263942, "item"),
    "210": (96258, "item"),
    "216": (106399, "item"),
    "508": (5888, "combination"),
    "509": (104830, "combination"),
    "702": (51878, "combination"),
    "853": (37148, "combination"),
    "301": (4, "context"),
    "109_14": (6086, "user"),
    "110_14": (116741, "user"),
    "127_14": (58015, "user"),
    "150_14": (33786, "user"),
}
DENSE = ("D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853")
TASKS = ("click", "order")
USER_FIELD = "101"
SPLITS = ("train", "val", "test")

#: Fields with at most this many ids keep their size under ``vocab_scale``.
SMALL_VOCAB = 100
#: Smallest vocabulary a large field shrinks to.
MIN_SCALED_VOCAB = 32
#: Arrays at least this large are allocated on huge pages (see ``_empty``).
_HUGE_ARRAY_BYTES = 1 << 26
#: Users per step of the latent-model build.
_BUILD_CHUNK = 8192
#: Rows per vectorised step (keeps temporaries cache-sized); ``generate`` seeds every chunk.
CHUNK_ROWS = 2048

_PROFILE = ("121", "122", "124", "125", "126", "127", "128", "129")
_BEHAVIOUR = ("109_14", "110_14", "127_14", "150_14")  # aggregates of cat/shop/brand/intention
_COMBO = ("508", "509", "702", "853")
_SPLIT_TAG = {"train": 1, "val": 2, "test": 3}

# ---- latent-model constants (tuned: oracle click AUC ~0.78, CVR-given-click AUC ~0.76) --------
_DIM = 4  # latent dimension
_K = 3  # label components: shared, click-specific, order-specific
_TOP = 4  # behaviour values kept per user and aggregate
_CAND = 16  # personalised candidate items per user
_P_PERSONAL = 0.5  # share of impressions drawn from the user's candidates
_P_HISTORY_PREF = 0.85  # share of history items from the preferred categories
_TAU_DAYS = 3.0  # recency decay of the interest vector and behaviour weights
_DAY_STEPS = 64  # days-ago resolution (1/64 day)
_NUM_CLUSTERS = 20  # category clusters
#: Scales of the latent model's parts (standard deviations of the random effects, weights).
_W = {
    "cluster": 0.9,  # category vector: its cluster's vector
    "cat_own": 0.3,  # category vector: category-specific part
    "cluster_bias": 0.45,  # item bias: category cluster
    "cat_bias": 0.15,  # item bias: category-specific
    "brand_bias": 0.08,  # item bias: brand
    "item_own_bias": 0.05,  # item bias: item-specific
    "brand": 0.2,  # item vector: brand part (category part has weight 1)
    "item_own": 0.2,  # item vector: item-specific part
    "profile": 0.6,  # user vector: sum of profile-value vectors
    "profile_bias": 0.25,  # user bias: per profile value
    "user_own": 0.2,  # user vector: user-specific part
    "user_own_bias": 0.05,  # user bias: user-specific
    "user_item": 0.25,  # weight of <user vector, item vector>
    "interest": 0.25,  # weight of <interest vector h, item vector>
}
_GAMMA_CLICK = 1.0
_GAMMA_CVR = 1.0
_CALIBRATION_ROWS = 1 << 17


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Configuration of the synthetic Ali-CCP data (hashable: it keys the latent-model cache).

    Attributes:
      seed: seeds the latent model and, with the split name, the rows.
      num_train, num_val, num_test: rows per split.
      vocab_scale: in (0, 1]; shrinks the large vocabularies (quick test configs).
      max_seq_len: padded behaviour-sequence length L (history length is uniform in [0, L]).
      num_locations: location vocabulary of the sequence, incl. 0 = unknown.
      task_correlation: ρ in [0, 1], weight of the shared label component.
      click_rate: target P(click).
      cvr: target P(order | click).
      num_sources: data sources with different feature distributions and one label model.
      zipf_exponent: popularity exponent of users and items.
      sequence: whether the schema and the batches carry the behaviour sequence.
      interest_weight, interest_decay_days, task_feature_split, interaction_weight,
      source_misalignment, user_item_weight: the phenomenon knobs (module docstring,
        "Phenomena"); their defaults give the data every earlier result was measured on.
    """

    seed: int = 0
    num_train: int = 1_000_000
    num_val: int = 100_000
    num_test: int = 100_000
    vocab_scale: float = 1.0
    max_seq_len: int = 20
    num_locations: int = 33
    task_correlation: float = 0.5
    click_rate: float = 0.10
    cvr: float = 0.10
    num_sources: int = 1
    zipf_exponent: float = 1.1
    sequence: bool = True
    interest_weight: float = 0.25
    interest_decay_days: float = 3.0
    task_feature_split: float = 0.0
    interaction_weight: float = 0.0
    source_misalignment: float = 0.0
    user_item_weight: float = 0.25

    def __post_init__(self):
        def check_int(name, lo, hi=None):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer):
                raise ValueError(f"SyntheticConfig.{name} must be an int, got {v!r}")
            if v < lo or (hi is not None and v > hi):
                rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
                raise ValueError(f"SyntheticConfig.{name}={v!r} is out of range; allowed {rng}")

        def check_float(name, lo, hi, lo_open, hi_open):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
                raise ValueError(f"SyntheticConfig.{name} must be a number, got {v!r}")
            v = float(v)
            ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
            if not ok or math.isnan(v):
                rng = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
                raise ValueError(f"SyntheticConfig.{name}={v!r} is out of range; allowed {rng}")

        check_int("seed", 0, 2**63 - 1)
        check_int("num_train", 0)
        check_int("num_val", 0)
        check_int("num_test", 0)
        check_float("vocab_scale", 0.0, 1.0, True, False)
        check_int("max_seq_len", 1, 1000)
        check_int("num_locations", 2, 1 << 16)
        check_float("task_correlation", 0.0, 1.0, False, False)
        check_float("click_rate", 0.0, 0.9, True, False)
        check_float("cvr", 0.0, 0.9, True, False)
        check_int("num_sources", 1, 64)
        check_float("zipf_exponent", 0.0, 3.0, True, False)
        check_float("interest_weight", 0.0, 10.0, False, False)
        check_float("interest_decay_days", 0.0, 100.0, True, False)
        check_float("task_feature_split", 0.0, 1.0, False, False)
        check_float("interaction_weight", 0.0, 10.0, False, False)
        check_float("source_misalignment", 0.0, 3.0, False, False)
        check_float("user_item_weight", 0.0, 10.0, False, False)
        if not isinstance(self.sequence, bool):
            raise ValueError(f"SyntheticConfig.sequence must be a bool, got {self.sequence!r}")


def vocab_sizes(cfg: SyntheticConfig) -> dict[str, int]:
    """Field → vocabulary size (incl. id 0) after ``vocab_scale``."""
    out = {}
    for name, (v, _) in FIELDS.items():
        if v <= SMALL_VOCAB or cfg.vocab_scale == 1.0:
            out[name] = v
        else:
            out[name] = min(v, max(MIN_SCALED_VOCAB, round(v * cfg.vocab_scale)))
    return out


def synthetic_schema(cfg: SyntheticConfig) -> Schema:
    """The schema of ``generate(cfg, ...)`` batches."""
    sizes = vocab_sizes(cfg)
    cats = tuple(
        CategoricalFeature(name, sizes[name], group=group) for name, (_, group) in FIELDS.items()
    )
    seq = None
    if cfg.sequence:
        seq = SequenceFeature(
            name="behaviour",
            table="205",
            target="205",
            max_len=cfg.max_seq_len,
            num_locations=cfg.num_locations,
        )
    return Schema(
        categorical=cats,
        dense=DENSE,
        sequence=seq,
        tasks=TASKS,
        user_field=USER_FIELD,
        num_sources=cfg.num_sources,
        has_p_true=True,
    )


# ---- helpers ----------------------------------------------------------------------------------


def zipf_ranks(rng: np.random.Generator, n: int, size: int, s: float) -> np.ndarray:
    """Ranks in [0, size) with P(rank ≥ r) ∝ a power law of exponent ``s`` (discretised Pareto).

    Inverse CDF of the density x^-s on [1, size + 1), floored: O(1) per draw, no table.
    """
    u = rng.random(n, dtype=np.float32)
    if abs(s - 1.0) < 1e-6:
        x = np.exp(u * np.float32(math.log(size + 1.0)))
    else:
        a = np.float32((size + 1.0) ** (1.0 - s) - 1.0)
        x = (np.float32(1.0) + u * a) ** np.float32(1.0 / (1.0 - s))
    r = x.astype(np.int32)
    r -= 1
    np.clip(r, 0, size - 1, out=r)
    return r


def _zipf_probs(size: int, s: float) -> np.ndarray:
    p = np.arange(1, size + 1, dtype=np.float64) ** -s
    return p / p.sum()


def _categorical(rng, probs, n) -> np.ndarray:
    """Draws ids 0..len(probs)-1 by inverse CDF (build-time helper)."""
    cdf = np.cumsum(probs)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(probs) - 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out = np.negative(x)
    np.exp(out, out=out)
    out += 1
    np.reciprocal(out, out=out)
    return out


def _bisect(f, target: float, lo: float = -30.0, hi: float = 30.0, iters: int = 60) -> float:
    """Root of the increasing function ``f(b) = target`` by bisection."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ---- the latent model -------------------------------------------------------------------------
#
# Layout for speed. Users and items are stored in popularity-rank order ("rows"), so the Zipf head
# is cache-resident, and every per-row quantity is one contiguous row gather (``np.take``). Dense
# features are 8-bit (``q / 255``); the combination match runs on packed bytes: the user's top-4
# values per key are compared with the item's keys (16 int32 compares), the matched weights are
# masked bytewise and the four slots are summed as packed words (one value per byte at most).


# per-user record (int32 columns; float parts stored as float32 bits)
_U_INT = 0  # 101, 121..129, 109_14, 110_14, 127_14, 150_14 (cat columns 0..8 and 19..22)
_U_BV = 13  # top behaviour values, slot-major [_TOP, 4] (cat, shop, brand, intention)
_U_Q = _U_BV + 4 * _TOP  # 8-bit weights: word 0 = D109_14..D150_14, then one word per slot
_U_CAND = _U_Q + 1 + _TOP  # personalised candidate item rows
_U_VEC = _U_CAND + _CAND  # user side of the bilinear form [_K, _DIM + 2] (float)
# seq_item [L] and, as uint16 pairs, [L] days-ago in 1/_DAY_STEPS days and [L] location ids
_U_SEQ = _U_VEC + _K * (_DIM + 2)
# per-item record: 205, 206, 207, 210, 216, 508, 509, 702, 853 ids; match keys tiled _TOP times;
# item side of the bilinear form (float)
_I_INT, _I_KEY = 0, 9
_I_VEC = _I_KEY + 4 * _TOP
_I_WIDTH = _I_VEC + _K * (_DIM + 2)


class _Items:
    """The item catalogue, one record per item in popularity-rank order (``rec``, layout
    ``_I_*``): the ids of 205 / 206 / 207 / 210 / 216, the combination ids 508.. a match maps to,
    the match keys and the item side of the bilinear form (module docstring, "Items")."""

    def __init__(self, vocab: dict[str, int], num_sources: int, rng: np.random.Generator):
        self.num = vocab["205"] - 1
        ids = self._ids(vocab, num_sources, rng)
        side = self._latent(vocab, ids[1], ids[4], rng)
        self.rec = self._records(vocab, ids, side, rng)

    def _ids(self, V: dict, num_sources: int, rng: np.random.Generator) -> tuple:
        """(item id, category, shop, intention, brand) of every item in layout order ``j``;
        sets the category ranges, the popularity rows and the per-source rankings."""
        n_items, n_cats = self.num, V["206"] - 1
        n_shops, n_int, n_brands = V["207"] - 1, V["210"] - 1, V["216"] - 1
        # Items are first laid out category by category (index j), so a category is a j-range.
        # Category sizes are Zipf-like; every category gets an item when there are enough items.
        cat_w = _zipf_probs(n_cats, 1.0)[rng.permutation(n_cats)]
        first = np.arange(min(n_items, n_cats))
        rest = _categorical(rng, cat_w, n_items - len(first))
        cat_j = np.sort(np.concatenate([first, rest]))  # 0-based category of item j
        self.cat_start = np.searchsorted(cat_j, np.arange(n_cats + 1))

        # shops, intentions, brands: a block of ids per category (brands spill over into the
        # next categories' blocks); every id space is then permuted so ids carry no order
        def per_cat(n_vals, offsets):
            base = (np.arange(n_cats, dtype=np.int64) * n_vals) // n_cats
            return (base[cat_j] + offsets) % n_vals

        def per(n_vals):
            return max(1, n_vals // n_cats)

        shop = per_cat(n_shops, rng.integers(0, per(n_shops), n_items))
        intention = per_cat(n_int, rng.integers(0, per(n_int), n_items))
        brand = per_cat(n_brands, np.minimum(rng.geometric(0.3, n_items) - 1, 4 * per(n_brands)))
        shop = rng.permutation(n_shops)[shop] + 1
        intention = rng.permutation(n_int)[intention] + 1
        brand = rng.permutation(n_brands)[brand] + 1
        brand[rng.random(n_items) < 0.25] = 0
        cat_id_of = rng.permutation(n_cats) + 1  # 0-based category → 206 id
        cat = cat_id_of[cat_j]
        self.range_of_cat = np.empty(n_cats + 1, np.int64)
        self.range_of_cat[cat_id_of] = np.arange(n_cats)
        # popularity rank (source 0) of item j; inside a category j follows popularity
        row_of_j = rng.permutation(n_items)
        self.row_of_j = row_of_j[np.lexsort((row_of_j, cat_j))]
        item_id = rng.permutation(n_items) + 1
        # sources s > 0 rank the items differently: rank → row
        self.source_rows = np.concatenate(
            [np.arange(n_items)] + [rng.permutation(n_items) for _ in range(1, num_sources)]
        ).astype(np.int32)
        return item_id, cat, shop, intention, brand

    def _latent(self, V: dict, cat, brand, rng: np.random.Generator) -> np.ndarray:
        """The item side of the bilinear form [n, K, d + 2] = [v, 1, item_bias] per component:
        category (clustered), brand and item-specific parts."""
        n_items, n_cats, n_brands = self.num, V["206"] - 1, V["216"] - 1
        d, K = _DIM, _K
        sd = 1 / math.sqrt(d)
        cl = rng.integers(0, _NUM_CLUSTERS, n_cats + 1)
        cl_vec = rng.normal(0, sd, (_NUM_CLUSTERS, K, d))
        cat_vec = _W["cluster"] * cl_vec[cl] + _W["cat_own"] * rng.normal(0, sd, (n_cats + 1, K, d))
        brand_vec = rng.normal(0, sd, (n_brands + 1, K, d))
        brand_vec[0] = 0
        cat_b = rng.normal(0, _W["cluster_bias"], (_NUM_CLUSTERS, K))[cl]
        cat_b += rng.normal(0, _W["cat_bias"], (n_cats + 1, K))
        brand_b = rng.normal(0, _W["brand_bias"], (n_brands + 1, K))
        brand_b[0] = 0
        vec = cat_vec[cat] + _W["brand"] * brand_vec[brand]
        vec += _W["item_own"] * rng.normal(0, sd, (n_items, K, d))
        bias = cat_b[cat] + brand_b[brand] + rng.normal(0, _W["item_own_bias"], (n_items, K))
        self.bias_std = float(bias[:, 0].std())  # of the shared component
        return np.concatenate([vec, np.ones((n_items, K, 1)), bias[..., None]], -1)

    def _records(self, V: dict, ids: tuple, side: np.ndarray, rng: np.random.Generator):
        """The records in row order; sets ``behaviour_ids`` (per key, the id of a value in the
        user behaviour field 109_14 / 110_14 / 127_14 / 150_14)."""
        n_items = self.num
        item_id, cat, shop, intention, brand = ids
        i_int = np.zeros((n_items, 9), np.int32)  # 205, 206, 207, 210, 216, 508, 509, 702, 853
        i_int[:, :5] = np.stack([item_id, cat, shop, intention, brand], 1)
        keys = np.stack([cat, shop, np.where(brand > 0, brand, -2), intention], 1)
        vals = (cat, shop, brand, intention)
        sizes = (V["206"] - 1, V["207"] - 1, V["216"] - 1, V["210"] - 1)
        self.behaviour_ids = []
        for k, (fld, bfld) in enumerate(zip(_COMBO, _BEHAVIOUR, strict=True)):
            # id of a matched value in the combination field, and in the user behaviour field
            m = rng.integers(1, V[fld], sizes[k] + 1).astype(np.int32)
            i_int[:, 5 + k] = np.where(vals[k] > 0, m[vals[k]], 0)
            b = rng.integers(1, V[bfld], sizes[k] + 1).astype(np.int32)
            b[0] = 0
            self.behaviour_ids.append(b)
        rec = np.empty((n_items, _I_WIDTH), np.int32)
        rec[:, _I_INT:_I_KEY] = i_int
        rec[:, _I_KEY:_I_VEC] = np.tile(keys, _TOP)
        rec[:, _I_VEC:] = side.reshape(n_items, -1).astype(np.float32).view(np.int32)
        return _scatter_rows(rec, self.row_of_j)

    def in_categories(self, cat_ids: np.ndarray, u01: np.ndarray) -> np.ndarray:
        """Rows of items drawn inside the given categories, Zipf (exponent 1) by popularity."""
        r = self.range_of_cat[cat_ids]
        lo, hi = self.cat_start[r], self.cat_start[r + 1]
        off = np.exp(u01 * np.log(hi - lo + 1.0)).astype(np.int64) - 1
        np.clip(off, 0, hi - lo - 1, out=off)
        return self.row_of_j[lo + off]


def _profiles(n_users: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Profile fields 121..129; ~13% of users have none, 126 and 129 are missing more often."""
    prof = {}
    no_profile = rng.random(n_users) < 0.13
    prof["121"] = 1 + _categorical(rng, _zipf_probs(97, 1.0), n_users)
    prof["122"] = rng.integers(1, 14, 98)[prof["121"]]  # the group of the profile
    prof["124"] = 1 + (rng.random(n_users) < 0.6)
    prof["125"] = 1 + _categorical(rng, [0.05, 0.2, 0.3, 0.2, 0.12, 0.08, 0.05], n_users)
    prof["126"] = 1 + _categorical(rng, [0.3, 0.5, 0.2], n_users)
    prof["127"] = 1 + _categorical(rng, [0.25, 0.5, 0.25], n_users)
    prof["128"] = 1 + (rng.random(n_users) < 0.3)
    prof["129"] = 1 + _categorical(rng, [0.3, 0.3, 0.25, 0.15], n_users)
    for f in prof:
        prof[f][no_profile] = 0
    prof["126"][rng.random(n_users) < 0.48] = 0
    prof["129"][rng.random(n_users) < 0.26] = 0
    return prof


def _profile_effects(V: dict, prof: dict, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """User vectors [n, K, d] and biases [n, K]: sums of profile-value effects plus a small
    user-specific part."""
    n_users, d, K = len(prof["121"]), _DIM, _K
    u_vec = np.zeros((n_users, K, d))
    u_bias = np.zeros((n_users, K))
    for f in _PROFILE:
        emb = rng.normal(0, _W["profile"] / math.sqrt(d), (V[f], K, d))
        bias = rng.normal(0, _W["profile_bias"], (V[f], K))
        emb[0] = 0
        bias[0] = 0
        u_vec += emb[prof[f]]
        u_bias += bias[prof[f]]
    u_vec += rng.normal(0, _W["user_own"] / math.sqrt(d), (n_users, K, d))  # user-specific
    u_bias += rng.normal(0, _W["user_own_bias"], (n_users, K))
    return u_vec, u_bias


def _user_side(cfg: SyntheticConfig, u_vec, u_bias, h) -> np.ndarray:
    """The user side of the bilinear form [n, K, d + 2] = [α u + μ h, user_bias, 1] per
    component, against the item side [v, 1, item_bias]; ``task_feature_split`` keeps the
    click-specific part to user and context features and the order-specific part to item ones."""
    ub = u_bias[..., None]
    uh = cfg.user_item_weight * u_vec + cfg.interest_weight * h
    ones = np.ones_like(ub)
    split = cfg.task_feature_split
    if split:
        keep = 1.0 - split
        uh[:, 1:] *= keep  # no user × item term in the task-specific parts
        ones[:, 1] *= keep  # the item bias of the click part
        ub[:, 2] *= keep  # the user bias of the order part
    return np.concatenate([uh, ub, ones], -1)


class _History(typing.NamedTuple):
    """The behaviour histories [n, L] of a chunk of users, most recent first."""

    length: np.ndarray  # [n]
    mask: np.ndarray  # position < length
    rows: np.ndarray  # item rows
    days: np.ndarray  # days ago
    weight: np.ndarray  # recency weight exp(-days / _TAU_DAYS), 0 past the length


class _Users:
    """Per-user records in popularity-rank order (``rec``, layout ``_U_*``): 101 and the profile
    121..129, the behaviour history and what derives from it (sequence, 14-day aggregates and
    their dense weights, personalised candidates), and the user side of the bilinear form
    (module docstring, "Users")."""

    def __init__(self, cfg: SyntheticConfig, vocab: dict, items: _Items, rng: np.random.Generator):
        self.cfg, self.items = cfg, items
        n_users, L, d, K = vocab["101"] - 1, cfg.max_seq_len, _DIM, _K
        self.num = n_users
        item_vec = items.rec[:, _I_VEC:].view(np.float32).reshape(-1, K, d + 2)[:, :, :d]
        item_vec = np.ascontiguousarray(item_vec).reshape(-1, K * d)
        item_keys = np.ascontiguousarray(items.rec[:, _I_KEY : _I_KEY + 4])
        prof = _profiles(n_users, rng)
        u_vec, u_bias = _profile_effects(vocab, prof, rng)

        # 101, 121..129 and, per chunk of users, the behaviour history and what derives from it
        width = _U_SEQ + (2 * L if cfg.sequence else 0)
        rec = np.zeros((n_users, width), np.int32)
        rec[:, _U_INT] = rng.permutation(n_users) + 1
        rec[:, _U_INT + 1 : _U_INT + 9] = np.stack([prof[f] for f in _PROFILE], 1)
        h = np.empty((n_users, K, d))
        for s in range(0, n_users, _BUILD_CHUNK):  # bounded, reused temporaries
            e = min(n_users, s + _BUILD_CHUNK)
            h[s:e] = self._histories(rng, rec[s:e], item_vec, item_keys)
        self.bias_std = float(u_bias[:, 0].std())  # of the shared component
        side = _user_side(cfg, u_vec, u_bias, h)
        rec[:, _U_VEC:_U_SEQ] = side.reshape(n_users, -1).astype(np.float32).view(np.int32)
        self.rec = rec

    def _histories(self, rng, rec: np.ndarray, item_vec, item_keys) -> np.ndarray:
        """Draws the behaviour of ``len(rec)`` users; fills their record; returns their interest."""
        pref_cat, pref_w = self._preferences(rng, len(rec))
        hist = self._history(rng, rec, pref_cat, pref_w)
        h = self._interest(hist, item_vec)
        self._aggregates(rec, hist, item_keys)
        self._candidates(rng, rec, hist, pref_cat, pref_w)
        return h

    def _preferences(self, rng, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Preferred categories [n, _TOP]: those of 1.._TOP popularity-drawn anchor items, with
        Dirichlet weights (0 past the user's number of preferences)."""
        item_cat = self.items.rec[:, _I_INT + 1]
        n_pref = rng.integers(1, _TOP + 1, n)
        anchor = zipf_ranks(rng, n * _TOP, self.items.num, 1.0)
        pref_cat = item_cat[anchor].reshape(n, _TOP)
        pref_w = rng.dirichlet(np.ones(_TOP), n) * (np.arange(_TOP) < n_pref[:, None])
        pref_w /= pref_w.sum(1, keepdims=True)
        return pref_cat, pref_w

    def _history(self, rng, rec: np.ndarray, pref_cat, pref_w) -> _History:
        """Behaviour histories: most items from the preferred categories, most recent first;
        writes the sequence part of the records."""
        cfg, L, n = self.cfg, self.cfg.max_seq_len, len(rec)
        item_cat = self.items.rec[:, _I_INT + 1]
        hist_len = rng.integers(0, L + 1, n)
        mask = np.arange(L) < hist_len[:, None]
        h_cat = np.take_along_axis(pref_cat, _categorical_rows(rng, pref_w, L), 1)
        rand_cat = item_cat[zipf_ranks(rng, n * L, self.items.num, 1.0)]
        own = rng.random((n, L)) < _P_HISTORY_PREF
        h_cat = np.where(own, h_cat, rand_cat.reshape(n, L))
        h_row = self.items.in_categories(h_cat, rng.random((n, L)))
        days = np.sort(np.floor(rng.random((n, L)) * 14 * _DAY_STEPS), axis=1)
        days = np.where(mask, days, 0.0) / _DAY_STEPS
        loc = np.where(mask, rng.integers(1, cfg.num_locations, (n, L)), 0)
        w = np.where(mask, np.exp(-days / _TAU_DAYS), 0.0)
        if cfg.sequence:
            rec[:, _U_SEQ : _U_SEQ + L] = np.where(mask, self.items.rec[h_row, _I_INT], 0)
            dl = np.concatenate([days * _DAY_STEPS, loc], 1).astype(np.uint16)
            rec[:, _U_SEQ + L :] = dl.view(np.int32)
        return _History(hist_len, mask, h_row, days, w)

    def _interest(self, hist: _History, item_vec: np.ndarray) -> np.ndarray:
        """Interest h = recency-weighted mean of the history's item vectors [n, K, d] (its own
        decay: the 14-day aggregates keep _TAU_DAYS whatever interest_decay_days is)."""
        cfg, K, d = self.cfg, _K, _DIM
        wh = hist.weight
        if cfg.interest_decay_days != _TAU_DAYS:
            wh = np.where(hist.mask, np.exp(-hist.days / cfg.interest_decay_days), 0.0)
        n = len(wh)
        h = np.zeros((n, K * d))
        for j in range(cfg.max_seq_len):
            h += wh[:, j, None] * np.take(item_vec, hist.rows[:, j], axis=0)
        return h.reshape(n, K, d) / np.maximum(wh.sum(1), 1e-9)[:, None, None]

    def _aggregates(self, rec: np.ndarray, hist: _History, item_keys: np.ndarray) -> None:
        """14-day aggregates: the top-_TOP (cat, shop, brand, intention) values by
        recency-weighted count, weights as bytes round(255 log1p(count) / log1p(L))."""
        L, n = self.cfg.max_seq_len, len(rec)
        keys = np.take(item_keys, hist.rows, axis=0)  # [n, L, 4]
        keys = np.where(hist.mask[:, :, None], keys, 0).transpose(0, 2, 1).reshape(-1, L)
        vals, tot = _top_values(keys, np.repeat(hist.weight, 4, axis=0), _TOP)  # [n * 4, _TOP]
        q = np.where(vals > 0, np.clip(np.rint(255 * np.log1p(tot) / math.log1p(L)), 1, 255), 0)
        vals = vals.reshape(n, 4, _TOP).transpose(0, 2, 1)  # slot-major [n, _TOP, 4]
        q = q.reshape(n, 4, _TOP).transpose(0, 2, 1).astype(np.uint8)
        for k in range(4):  # the top value is the user field 109_14 / 110_14 / 127_14 / 150_14
            rec[:, _U_INT + 9 + k] = self.items.behaviour_ids[k][np.maximum(vals[:, 0, k], 0)]
        rec[:, _U_BV:_U_Q] = vals.reshape(n, 4 * _TOP)
        # word 0: D109_14.. bytes (the top slot); words 1.._TOP: the slots' weights
        q = np.concatenate([q[:, :1], q], 1)
        rec[:, _U_Q:_U_CAND] = np.ascontiguousarray(q.reshape(n, -1)).view(np.int32)

    def _candidates(self, rng, rec: np.ndarray, hist: _History, pref_cat, pref_w) -> None:
        """Personalised candidates: re-exposed history items or items of the preferred
        categories."""
        n = len(rec)
        c_cat = np.take_along_axis(pref_cat, _categorical_rows(rng, pref_w, _CAND), 1)
        cand = self.items.in_categories(c_cat, rng.random((n, _CAND)))
        pick = rng.integers(0, np.maximum(hist.length, 1)[:, None], (n, _CAND))
        re_expose = (rng.random((n, _CAND)) < 0.3) & (hist.length[:, None] > 0)
        rec[:, _U_CAND:_U_VEC] = np.where(re_expose, np.take_along_axis(hist.rows, pick, 1), cand)


class _LabelModel:
    """The parts of the label components outside the records (module docstring, "Labels"): the
    dense effect ``beta`` [8, K], the position effect [4, K] and, for ``interaction_weight``,
    the scales that standardise the shared user and item biases."""

    def __init__(self, cfg: SyntheticConfig, users: _Users, items: _Items, rng):
        self.interaction_weight = cfg.interaction_weight
        self.bias_scale = np.array([1 / max(users.bias_std, 1e-9), 1 / max(items.bias_std, 1e-9)])
        # dense effect: behaviour strength and interest matches raise both tasks
        base = np.array([0.3, 0.2, 0.2, 0.2, 1.6, 0.8, 0.8, 0.6])
        self.beta = (base[:, None] * rng.uniform(0.3, 1.7, (8, _K))).astype(np.float32)
        split = cfg.task_feature_split
        if split:  # D508.. are user × item matches: not in the task-specific parts; the order
            # part keeps no user-side dense feature either
            keep = 1.0 - split
            self.beta[4:, 1] *= keep
            self.beta[:, 2] *= keep
        pos = np.zeros((4, _K), np.float32)  # position 301 (ids 1..3): shared and click parts
        pos[1:, 0] = [0.35, 0.0, -0.35]
        pos[1:, 1] = [0.25, 0.0, -0.25]
        self.position = pos

    def projection(self, mix: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """Matrices taking (bilinear products, dense, position, the bias interaction) to the
        components ``z`` [n, K], or to ``z @ mix`` when ``mix`` is given."""
        sum_k = np.kron(np.eye(_K), np.ones((_DIM + 2, 1)))  # sums each component's products
        inter = np.zeros((1, _K))
        inter[0, 0] = self.interaction_weight  # the shared component
        mats = (sum_k, self.beta, self.position, inter)
        if mix is not None:
            mats = tuple(m @ mix for m in mats)
        return tuple(np.ascontiguousarray(m, dtype=np.float32) for m in mats)


def _mix(rho: float, z_scale: np.ndarray) -> np.ndarray:
    """[K, 2] matrix from the raw components to the two logits (before the biases)."""
    m = np.zeros((_K, 2))
    m[0] = [math.sqrt(rho) * _GAMMA_CLICK, math.sqrt(rho) * _GAMMA_CVR]
    m[1, 0] = math.sqrt(1 - rho) * _GAMMA_CLICK
    m[2, 1] = math.sqrt(1 - rho) * _GAMMA_CVR
    return (m / z_scale[:, None]).astype(np.float32)


def _calibration(cfg: SyntheticConfig, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From a sample ``z`` [n, K] of the raw components: the mix that standardises them and the
    logit offsets (b_click, b_cvr found by bisection) that hit the target rates."""
    z_mean = z.mean(0)
    z_scale = np.where(z.std(0) > 0, z.std(0), 1).astype(np.float32)
    mix = _mix(cfg.task_correlation, z_scale)
    logits = ((z - z_mean) @ mix).astype(np.float64)
    b_click = _bisect(lambda b: _sigmoid(logits[:, 0] + b).mean(), cfg.click_rate)
    pc = _sigmoid(logits[:, 0] + b_click)
    b_cvr = _bisect(lambda b: (pc * _sigmoid(logits[:, 1] + b)).sum() / pc.sum(), cfg.cvr)
    offset = np.array([b_click, b_cvr]) - z_mean @ mix
    return mix, offset.astype(np.float32)


class _Sources:
    """How the sources' features differ (module docstring, "Phenomena"): the position mix
    (``pos_cdf``) and dense warps ``D ** gamma`` of the rows; with ``source_misalignment`` what
    each source s > 0 shows of the features the labels were made from (``shown_gamma``,
    ``shown_pos``, else None). The sources' item rankings are ``_Items.source_rows``."""

    def __init__(self, cfg: SyntheticConfig, rng: np.random.Generator):
        S = cfg.num_sources
        p_pos = np.array([0.5, 0.3, 0.2])
        pcdf = [np.cumsum(p_pos if s == 0 else rng.dirichlet(10 * p_pos))[:2] for s in range(S)]
        self.pos_cdf = np.array(pcdf, np.float32)
        gam = np.ones((S, 8), np.float32)
        gam[1:] = np.exp(rng.uniform(-0.5, 0.5, (S - 1, 8)))
        self.dense_gamma = gam
        # its own stream, so the labels and every other draw stay as without it
        a = cfg.source_misalignment
        self.shown_gamma = self.shown_pos = None
        if a and S > 1:
            mis = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0x5A11]))
            shown = np.ones((S, 8), np.float32)
            shown[1:] = np.exp(mis.uniform(-a, a, (S - 1, 8)))
            self.shown_gamma = shown
            perm = np.tile(np.arange(4, dtype=np.int32), (S, 1))  # position ids, 0 stays 0
            for src in range(1, S):
                perm[src, 1:] = 1 + mis.permutation(3)
            self.shown_pos = perm


class LatentModel:
    """Everything random but the rows, for one configuration: the item catalogue, the users,
    the label model and the sources' differences; ``sample`` draws rows from them."""

    def __init__(self, cfg: SyntheticConfig):
        self.cfg = cfg
        self.schema = synthetic_schema(cfg)
        self.vocab = vocab_sizes(cfg)
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0x5EED]))
        self.items = _Items(self.vocab, cfg.num_sources, rng)
        self.users = _Users(cfg, self.vocab, self.items, rng)
        self.labels = _LabelModel(cfg, self.users, self.items, rng)
        self.sources = _Sources(cfg, rng)
        self._calibrate(np.random.default_rng(np.random.SeedSequence([cfg.seed, 0xCA1])))

    def _calibrate(self, rng: np.random.Generator) -> None:
        """Sets the projection to the two logits and their offsets from a calibration sample."""
        n = _CALIBRATION_ROWS
        proj = self.labels.projection(None)
        z = np.empty((n, _K), np.float32)
        for s in range(0, n, CHUNK_ROWS):
            e = min(n, s + CHUNK_ROWS)
            z[s:e] = self._rows(e - s, rng, np.empty((e - s, 8), np.float32), proj)["y"]
        mix, self.offset = _calibration(self.cfg, z)
        self.logits_projection = self.labels.projection(mix)

    # -- rows ---------------------------------------------------------------------------------
    def _rows(self, n: int, rng: np.random.Generator, dense: np.ndarray, proj: tuple) -> dict:
        """Draws ``n`` (source, user, item, position); writes ``dense`` [n, 8]; returns the rest.

        Returns the gathered user and item records, the position, the combination ids (0 when
        absent) and ``y``: the label components projected by ``proj`` (see
        ``_LabelModel.projection``).
        """
        src, urec, irec, pos = self._draw(n, rng)
        combo = self._matches(urec, irec, src, dense)
        y = self._components(urec, irec, dense, pos, proj)
        return {"src": src, "urec": urec, "irec": irec, "pos": pos, "combo": combo, "y": y}

    def _draw(self, n: int, rng: np.random.Generator) -> tuple:
        """(source or None, user records, item records, position) of ``n`` rows."""
        cfg, S, items = self.cfg, self.cfg.num_sources, self.items
        src = rng.integers(0, S, n, dtype=np.int32) if S > 1 else None
        urow = zipf_ranks(rng, n, self.users.num, cfg.zipf_exponent)
        irow = zipf_ranks(rng, n, items.num, cfg.zipf_exponent)
        if src is not None:
            irow = np.take(items.source_rows, irow + src * items.num)
        urec = np.take(self.users.rec, urow, axis=0)
        # personalised with probability _P_PERSONAL; the same uniform picks the candidate
        u = rng.random(n, dtype=np.float32)
        personal = u < _P_PERSONAL
        u *= np.float32(_CAND / _P_PERSONAL)
        flat = u.astype(np.int32)
        np.minimum(flat, _CAND - 1, out=flat)
        flat += np.arange(_U_CAND, n * urec.shape[1], urec.shape[1], dtype=np.int32)
        np.copyto(irow, np.take(urec, flat), where=personal)
        irec = np.take(items.rec, irow, axis=0)
        u = rng.random(n, dtype=np.float32)
        pos_cdf = self.sources.pos_cdf
        c0, c1 = np.take(pos_cdf, src, axis=0).T if src is not None else pos_cdf[0]
        pos = (u > c0).view(np.int8).astype(np.int32)
        pos += u > c1
        pos += 1
        return src, urec, irec, pos

    def _matches(self, urec, irec, src, dense: np.ndarray) -> np.ndarray:
        """Writes ``dense`` (the behaviour strengths and the user's weights on the item's
        values); returns the combination ids 508 / 509 / 702 / 853 (0 where no match).

        Compare, mask the weight bytes, add the _TOP slot words (≤ 1 match per byte, so no
        carries), then fold the two 32-bit halves of the 64-bit sums."""
        eq = urec[:, _U_BV : _U_BV + 4 * _TOP] == irec[:, _I_KEY : _I_KEY + 4 * _TOP]
        uq = _block(urec, _U_Q, 1 + _TOP).view(np.uint32)
        m = eq.view(np.uint32)
        m *= np.uint32(0xFF)
        m &= uq[:, 1:]
        m64 = m.view(np.uint64)  # [n, _TOP / 2]
        acc = m64[:, 0].copy()
        for t in range(1, _TOP // 2):
            acc += m64[:, t]
        acc += acc >> np.uint64(32)
        q = np.empty((len(urec), 2), np.uint32)  # bytes: D109_14 .. D150_14, D508 .. D853
        q[:, 0] = uq[:, 0]
        q[:, 1] = acc
        q8 = q.view(np.uint8)
        np.multiply(q8, np.float32(1 / 255), out=dense)
        if src is not None:
            dense **= np.take(self.sources.dense_gamma, src, axis=0)
        combo = _block(irec, _I_INT + 5, 4)
        combo *= q8[:, 4:8] != 0
        return combo

    def _components(self, urec, irec, dense, pos, proj: tuple) -> np.ndarray:
        """The label components (or, projected, the logits) [n, K or 2]: bilinear + dense +
        position parts (+ the bias interaction)."""
        width = _K * (_DIM + 2)
        w_prod, w_dense, w_pos, w_inter = proj
        u_side = urec[:, _U_VEC : _U_VEC + width].view(np.float32)
        i_side = irec[:, _I_VEC : _I_VEC + width].view(np.float32)
        y = np.multiply(u_side, i_side)
        y = y @ w_prod
        y += dense @ w_dense
        y += np.take(w_pos, pos, axis=0)
        if self.cfg.interaction_weight:
            # product of the standardised shared user bias and item bias: a cross of what the
            # user-profile fields and the item fields each say on their own
            scale = self.labels.bias_scale
            su = u_side[:, _DIM] * np.float32(scale[0])
            si = i_side[:, _DIM + 1] * np.float32(scale[1])
            y += (su * si)[:, None] * w_inter
        return y

    def _fill(self, out: dict, start: int, n: int, rng: np.random.Generator) -> None:
        """Writes rows [start, start + n) of ``out``, chunk by chunk from ``rng``."""
        for s in range(start, start + n, CHUNK_ROWS):
            e = min(start + n, s + CHUNK_ROWS)
            f = self._rows(e - s, rng, out["dense"][s:e], self.logits_projection)
            self._write_labels(out, s, e, f["y"], rng)
            self._write_features(out, s, e, f)

    def _write_labels(self, out: dict, s: int, e: int, logits: np.ndarray, rng) -> None:
        """Labels and ``p_true`` of rows [s, e) from their logits (offsets not yet added)."""
        logits += self.offset
        p = _sigmoid(logits)
        p[:, 1] *= p[:, 0]  # P(order) = P(click) P(cvr | click)
        r = rng.random((e - s, 2), dtype=np.float32)
        click = r[:, 0] < p[:, 0]
        # order | click ~ Bernoulli(p_cvr):  r1 < p_cvr  <=>  r1 * p_click < p_order
        order = click & (r[:, 1] * p[:, 0] < p[:, 1])
        out["labels"][s:e, 0] = click
        out["labels"][s:e, 1] = order
        out["p_true"][s:e] = p

    def _write_features(self, out: dict, s: int, e: int, f: dict) -> None:
        """The features of rows [s, e) as their source shows them (``dense`` is written)."""
        sources = self.sources
        if sources.shown_gamma is not None:  # what the sources show, after the labels
            src = f["src"]
            out["dense"][s:e] **= np.take(sources.shown_gamma, src, axis=0)
            f["pos"] = sources.shown_pos[src, f["pos"]]
        urec, irec = f["urec"], f["irec"]
        cat = out["cat"][s:e]
        _copy_cols(cat, 0, urec, _U_INT, 9)
        _copy_cols(cat, 9, irec, _I_INT, 5)
        _copy_cols(cat, 14, f["combo"], 0, 4)
        cat[:, 18] = f["pos"]
        _copy_cols(cat, 19, urec, _U_INT + 9, 4)
        out["user"][s:e] = urec[:, _U_INT]
        out["source"][s:e] = 0 if f["src"] is None else f["src"]
        if self.cfg.sequence:
            L = self.cfg.max_seq_len
            _copy_cols(out["seq_item"][s:e], 0, urec, _U_SEQ, L)
            dl = _block(urec, _U_SEQ + L, L).view(np.uint16)
            np.multiply(dl[:, :L], np.float32(1 / _DAY_STEPS), out=out["seq_days"][s:e])
            out["seq_loc"][s:e] = dl[:, L:]

    def empty(self, n: int) -> dict[str, np.ndarray]:
        """Uninitialised output arrays for ``n`` rows (the schema's batch keys)."""
        F, L, T = self.schema.num_fields, self.cfg.max_seq_len, len(TASKS)
        shapes = {
            "cat": ((n, F), np.int32),
            "dense": ((n, len(DENSE)), np.float32),
            "labels": ((n, T), np.float32),
            "user": ((n,), np.int32),
            "source": ((n,), np.int32),
            "p_true": ((n, T), np.float32),
        }
        if self.cfg.sequence:
            shapes["seq_item"] = ((n, L), np.int32)
            shapes["seq_days"] = ((n, L), np.float32)
            shapes["seq_loc"] = ((n, L), np.int32)
        return {k: _empty(shape, dtype) for k, (shape, dtype) in shapes.items()}

    def sample(self, num_rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``num_rows`` rows drawn with ``rng``: a dict with exactly the schema's batch keys."""
        if num_rows < 0:
            raise ValueError(f"num_rows must be >= 0, got {num_rows}")
        out = self.empty(num_rows)
        self._fill(out, 0, num_rows, rng)
        return out


def _empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """``np.empty``; large arrays are backed by transparent huge pages where Linux offers them.

    First-touch page faults of fresh memory cost about as much as generating the rows; with 2 MiB
    pages they nearly vanish.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes >= _HUGE_ARRAY_BYTES and hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            buf.madvise(mmap.MADV_HUGEPAGE)
            return np.frombuffer(buf, dtype).reshape(shape)
        except (OSError, ValueError):
            pass
    return np.empty(shape, dtype)


def _scatter_rows(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``out[rows[j]] = a[j]`` (reorders a table from build order into row order)."""
    out = np.empty_like(a)
    out[rows] = a
    return out


def _block(src: np.ndarray, s0: int, width: int) -> np.ndarray:
    """A C-contiguous copy of ``src[:, s0:s0+width]`` (4-byte dtype), made by ``_copy_cols``."""
    out = np.empty((src.shape[0], width), src.dtype)
    _copy_cols(out, 0, src, s0, width)
    return out


def _copy_cols(dst: np.ndarray, d0: int, src: np.ndarray, s0: int, width: int) -> None:
    """``dst[:, d0:d0+width] = src[:, s0:s0+width]`` for C-contiguous 4-byte arrays.

    Views each row's block as one opaque ``width * 4``-byte element, so numpy copies one block per
    row instead of looping over ``width`` columns per row (several times faster).
    """
    n = src.shape[0]
    if n == 0:
        return
    vt = np.dtype((np.void, 4 * width))
    s = np.ndarray((n,), vt, buffer=src, offset=4 * s0, strides=(src.strides[0],))
    d = np.ndarray((n,), vt, buffer=dst, offset=4 * d0, strides=(dst.strides[0],))
    d[...] = s


def _categorical_rows(rng, w: np.ndarray, m: int) -> np.ndarray:
    """[n, m] draws of column indices of ``w`` [n, k] with row-wise probabilities ``w``."""
    cdf = np.cumsum(w, 1)
    u = rng.random((w.shape[0], m)) * cdf[:, -1:]
    j = (u[:, :, None] >= cdf[:, None, :]).sum(-1)
    return np.minimum(j, w.shape[1] - 1)


def _top_values(vals: np.ndarray, w: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``top`` distinct positive values of ``vals`` [n, L] by total weight ``w``.

    Returns the values [n, top] (-1 where there are fewer) and their total weights (0 there).
    Sort-based: runs of equal values are summed with a cumulative sum.
    """
    n, L = vals.shape
    none = np.iinfo(np.int64).max
    v = vals.astype(np.int64)
    v[vals <= 0] = none
    order = np.argsort(v, axis=1, kind="stable")
    sv, sw = np.take_along_axis(v, order, 1), np.take_along_axis(w, order, 1)
    cs = np.cumsum(sw, 1)
    start = np.ones((n, L), bool)
    start[:, 1:] = sv[:, 1:] != sv[:, :-1]
    end = np.ones((n, L), bool)
    end[:, :-1] = start[:, 1:]
    before = np.maximum.accumulate(np.where(start, cs - sw, 0.0), axis=1)  # cs before the run
    score = np.where(end & (sv != none), cs - before, -1.0)
    pick = np.argsort(-score, axis=1, kind="stable")[:, :top]
    best = np.take_along_axis(score, pick, 1)
    out = np.where(best >= 0, np.take_along_axis(sv, pick, 1), -1)
    if L < top:
        out = np.pad(out, ((0, 0), (0, top - L)), constant_values=-1)
        best = np.pad(best, ((0, 0), (0, top - L)), constant_values=-1.0)
    return out, np.maximum(best, 0.0)


@functools.lru_cache(maxsize=4)
def latent_model(cfg: SyntheticConfig) -> LatentModel:
    """The (cached) latent model of ``cfg``."""
    return LatentModel(cfg)


def generate(cfg: SyntheticConfig, split: str) -> dict[str, np.ndarray]:
    """All rows of one split: ``{"cat", "dense", "labels", "user", "source", "p_true", …}``.

    The latent model (``latent_model(cfg)``, cached) is shared by all splits, so users overlap.
    Rows are made ``CHUNK_ROWS`` at a time, chunk ``c`` from an RNG seeded by
    ``(cfg.seed, split, c)``: splits differ, memory stays bounded by the output, and every chunk
    is independent of the others (a split with fewer rows is a prefix of one with more).
    """
    if split not in _SPLIT_TAG:
        raise ValueError(f"unknown split {split!r}; valid splits are {list(SPLITS)}")
    n = getattr(cfg, f"num_{split}")
    model = latent_model(cfg)
    out = model.empty(n)
    for c, s in enumerate(range(0, n, CHUNK_ROWS)):
        rng = np.random.default_rng([cfg.seed, _SPLIT_TAG[split], c])
        if n - s >= CHUNK_ROWS:
            model._fill(out, s, CHUNK_ROWS, rng)
        else:  # a last partial chunk is the prefix of a full one
            tail = model.sample(CHUNK_ROWS, rng)
            for k, v in out.items():
                v[s:] = tail[k][: n - s]
    return out
