"""Raw-format Ali-CCP files of any size, for tests and benchmarks (the real files cannot ship).

``write_raw(out_dir, num_impressions, seed)`` writes ``sample_skeleton_{train,test}.csv`` and
``common_features_{train,test}.csv`` with the layout of ``shared/docs/aliccp-format.md``: skeleton
lines grouped by common-feature key (a geometric number of impressions per key, ~58 on average as
in the real data), common lines shuffled within each batch of keys (so a joiner must look them
up), disjoint raw id ranges per field, real-like missing rates, ~518 entries per common line and
``ln(count)`` weights. Deterministic given its arguments; memory is bounded by one batch of keys.
Popularity (items, behaviour ids, users) follows :func:`mtl_jax.data.synthetic.zipf_ranks`, the
library's one Zipf sampler.
"""

from __future__ import annotations

import math
import os

import numpy as np

from mtl_jax.data.hashing import mix64
from mtl_jax.data.synthetic import zipf_ranks

#: Raw id ranges of the writer: field → (first raw id, ids). Disjoint, like the real global id
#: space (``aliccp-format.md`` §4).
_RAW_RANGES = {
    "101": (1, 400_000),
    "121": (3_438_658, 97),
    "122": (3_438_755, 13),
    "124": (3_438_768, 2),
    "125": (3_438_770, 7),
    "126": (3_438_777, 3),
    "127": (3_438_780, 3),
    "128": (3_438_783, 2),
    "129": (3_438_785, 4),
    "109_14": (1_000_000, 6_085),
    "110_14": (1_400_000, 116_740),
    "127_14": (3_490_000, 58_014),
    "150_14": (3_870_000, 33_785),
    "205": (4_900_000, 1_500_000),
    "206": (8_310_000, 8_580),
    "207": (8_700_000, 280_000),
    "210": (9_000_000, 96_257),
    "216": (9_150_000, 100_000),
    "301": (9_351_665, 3),
    "508": (9_355_000, 7_734),
    "509": (9_510_000, 180_000),
    "702": (9_700_000, 142_631),
    "853": (9_850_000, 74_316),
}
_PROFILE = ("121", "122", "124", "125", "126", "127", "128", "129")
_USER_BAGS = ("150_14", "127_14", "109_14", "110_14")  # the order of the PaddleRec excerpt
#: Mean bag lengths: they make a common line ~518 entries as in the real file (IDX-b).
_BAG_MEAN = {"150_14": 130.0, "127_14": 104.0, "109_14": 110.0, "110_14": 165.0}
_WEIGHTS = [f"{math.log(k):.5f}".rstrip("0") for k in range(2, 4098)]  # ln(count), 5 decimals
_WEIGHTS_S = np.array([w.encode() for w in _WEIGHTS])
_ZIPF = 1.1  # popularity exponent of items and behaviour ids


def _hash_field(values: np.ndarray, salt: int, n: int) -> np.ndarray:
    return (
        mix64(np.asarray(values, np.uint64) * np.uint64(1_000_003) + np.uint64(salt)) % n
    ).astype(np.int64)


def _raw(field: str, local: np.ndarray) -> np.ndarray:
    return _RAW_RANGES[field][0] + local


def _weight_index(rng: np.random.Generator, size) -> np.ndarray:
    return np.minimum(rng.geometric(0.3, size) - 1, len(_WEIGHTS) - 1)


def _join_lines(headers: list[bytes], counts: np.ndarray, fields, ids, vals) -> bytes:
    """``header + entries joined by \\x01 + \\n`` per line; entries are given flat, in order."""
    tok = np.strings.add(np.strings.add(fields, ids.astype("S20")), vals).tolist()
    out = []
    pos = 0
    for h, c in zip(headers, counts.tolist()):
        out.append(h)
        out.append(b"\x01".join(tok[pos : pos + c]))
        out.append(b"\n")
        pos += c
    return b"".join(out)


def _prefix(field: str) -> bytes:
    return field.encode() + b"\x02"


def _common_lines(users: np.ndarray, keys: list[bytes], seed: int) -> bytes:
    """One common-features line per group: the user's profile and behaviour bags."""
    headers, counts, fields, ids, vals = [], [], [], [], []
    for u, key in zip(users.tolist(), keys):
        rng = np.random.default_rng([seed, 1, u])
        f_list, id_list, v_list = [b"101\x02"], [_raw("101", np.array([u]))], [[b"\x031.0"]]
        if rng.random() >= 0.13:  # ~13% of users have no profile
            for f in _PROFILE:
                if (f == "126" and rng.random() < 0.5) or (f == "129" and rng.random() < 0.25):
                    continue
                f_list.append(_prefix(f))
                id_list.append(_raw(f, rng.integers(0, _RAW_RANGES[f][1], 1)))
                v_list.append([b"\x031.0"])
        for f in _USER_BAGS:
            k = int(rng.poisson(_BAG_MEAN[f]))
            local = np.unique(zipf_ranks(rng, k, _RAW_RANGES[f][1], _ZIPF))
            rng.shuffle(local)
            f_list.extend([_prefix(f)] * len(local))
            id_list.append(_raw(f, local))
            v_list.append(np.strings.add(b"\x03", _WEIGHTS_S[_weight_index(rng, len(local))]))
        n = len(f_list)
        headers.append(key + b"," + str(n).encode() + b",")
        counts.append(n)
        fields.extend(f_list)
        ids.append(np.concatenate(id_list))
        vals.extend(np.concatenate([np.asarray(v, dtype="S12") for v in v_list]).tolist())
    return _join_lines(
        headers,
        np.array(counts),
        np.array(fields, dtype="S8"),
        np.concatenate(ids),
        np.array(vals, dtype="S12"),
    )


def _skeleton_lines(
    rng: np.random.Generator,
    sizes: np.ndarray,
    keys: list[bytes],
    first_sid: int,
    click_rate: float,
    cvr: float,
    anomaly_rate: float,
) -> tuple[bytes, dict]:
    """The impressions of a batch of groups: item-side features and labels."""
    n = int(sizes.sum())
    item = zipf_ranks(rng, n, _RAW_RANGES["205"][1], _ZIPF).astype(np.int64)
    cat = _hash_field(item, 1, _RAW_RANGES["206"][1])
    shop = _hash_field(item, 2, _RAW_RANGES["207"][1])
    brand = _hash_field(item, 3, _RAW_RANGES["216"][1])
    has_brand = _hash_field(item, 4, 100) >= 29
    n_int = 1 + _hash_field(item, 5, 11)  # ~6 intention nodes per item
    pos = np.minimum(rng.geometric(0.5, n) - 1, 2)
    has = {f: rng.random(n) < p for f, p in (("508", 0.7), ("509", 0.22), ("702", 0.22))}
    n853 = np.where(rng.random(n) < 0.41, rng.integers(1, 7, n), 0)

    # Entries per line in the real order: 210 x k, 216, 301, 205, 206, 207, 508, 509, 702, 853 x m.
    per_line = n_int + has_brand + 4 + has["508"] + has["509"] + has["702"] + n853
    f_parts, id_parts, v_parts, order_parts = [], [], [], []

    def emit(field, rows, local, rank, weights=None):
        f_parts.append(np.full(len(rows), _prefix(field), dtype="S8"))
        id_parts.append(_raw(field, local))
        w = b"\x031.0" if weights is None else np.strings.add(b"\x03", _WEIGHTS_S[weights])
        v_parts.append(np.broadcast_to(np.asarray(w, dtype="S12"), len(rows)))
        order_parts.append(rows * 10_000 + rank)  # sorts entries into line, then slot order

    r210 = np.repeat(np.arange(n), n_int)
    j210 = np.arange(len(r210)) - np.repeat(np.cumsum(n_int) - n_int, n_int)
    emit("210", r210, _hash_field(item[r210] * 16 + j210, 6, _RAW_RANGES["210"][1]), j210)
    rb = np.flatnonzero(has_brand)
    emit("216", rb, brand[rb], 100)
    a = np.arange(n)
    emit("301", a, pos, 101)
    emit("205", a, item, 102)
    emit("206", a, cat, 103)
    emit("207", a, shop, 104)
    for j, (f, base) in enumerate((("508", cat), ("509", shop), ("702", brand))):
        r = np.flatnonzero(has[f])
        emit(
            f,
            r,
            _hash_field(base[r], 7 + j, _RAW_RANGES[f][1]),
            105 + j,
            _weight_index(rng, len(r)),
        )
    r853 = np.repeat(np.arange(n), n853)
    j853 = np.arange(len(r853)) - np.repeat(np.cumsum(n853) - n853, n853)
    emit(
        "853",
        r853,
        _hash_field(item[r853] * 16 + j853, 10, _RAW_RANGES["853"][1]),
        200 + j853,
        _weight_index(rng, len(r853)),
    )
    order = np.argsort(np.concatenate(order_parts), kind="stable")

    # Labels: more clicks at the top position and on items matching the user's categories.
    p = click_rate * np.array([1.6, 0.8, 0.5])[pos] * np.where(has["508"], 1.2, 0.55)
    click = rng.random(n) < np.minimum(p, 1.0)
    conv = click & (rng.random(n) < cvr)
    anomaly = rng.random(n) < anomaly_rate
    click[anomaly], conv[anomaly] = False, True
    group = np.repeat(np.arange(len(sizes)), sizes)
    headers = [
        b"%d,%d,%d,%s,%d," % (first_sid + i, c, v, keys[g], k)
        for i, (c, v, g, k) in enumerate(
            zip(click.tolist(), conv.tolist(), group.tolist(), per_line.tolist())
        )
    ]
    text = _join_lines(
        headers,
        per_line,
        np.concatenate(f_parts)[order],
        np.concatenate(id_parts)[order],
        np.concatenate(v_parts)[order],
    )
    stats = {
        "impressions": n,
        "clicks": int(click.sum()),
        "conversions": int((click & conv).sum()),
        "anomalies": int(anomaly.sum()),
    }
    return text, stats


def write_raw(
    out_dir: str,
    num_impressions: int,
    seed: int = 0,
    *,
    num_test: int | None = None,
    rows_per_group: float = 58.0,
    num_users: int | None = None,
    click_rate: float = 0.039,
    cvr: float = 0.0054,
    anomaly_rate: float = 1e-5,
    groups_per_batch: int = 64,
) -> dict:
    """Writes raw-format Ali-CCP files (train and test) of any size, streaming.

    Writes ``sample_skeleton_{train,test}.csv`` and ``common_features_{train,test}.csv`` with the
    documented layout: skeleton lines grouped by key (a geometric number of impressions per
    group, mean ``rows_per_group``), common lines in a shuffled order within each batch of
    groups (so a joiner must seek), real-like field ranges, missing rates, bag sizes (~518
    entries per common line) and ``ln(count)`` weights. Memory is bounded by one batch of
    ``groups_per_batch`` groups. Deterministic given the arguments.

    Args:
      out_dir: created if missing.
      num_impressions: train impressions (``num_test`` defaults to a quarter of it).
      seed: seeds everything.
      rows_per_group: mean impressions per common-feature key (real data: ~58).
      num_users: user population (default: ~1 user per 1.8 groups, as in the real data).
      click_rate, cvr: mean P(click) and P(conversion | click).
      anomaly_rate: share of impressions written as click=0, conversion=1.
      groups_per_batch: groups generated and written at a time.

    Returns:
      Per split: impressions, groups, clicks, conversions, anomalies and the two files' paths
      and sizes.
    """
    os.makedirs(out_dir, exist_ok=True)
    if num_test is None:
        num_test = num_impressions // 4
    if num_users is None:
        num_users = max(1, int(max(num_impressions, num_test) / rows_per_group / 1.8))
    out = {}
    for tag, (split, n_total) in enumerate((("train", num_impressions), ("test", num_test))):
        rng = np.random.default_rng([seed, 100 + tag])
        sk_path = os.path.join(out_dir, f"sample_skeleton_{split}.csv")
        cm_path = os.path.join(out_dir, f"common_features_{split}.csv")
        stats = {"impressions": 0, "groups": 0, "clicks": 0, "conversions": 0, "anomalies": 0}
        with open(sk_path, "wb") as sk, open(cm_path, "wb") as cm:
            while stats["impressions"] < n_total:
                sizes = rng.geometric(1.0 / rows_per_group, groups_per_batch)
                left = n_total - stats["impressions"]
                cum = np.cumsum(sizes)
                sizes = sizes[: int(np.searchsorted(cum, left)) + 1]
                sizes[-1] -= max(int(sizes.sum()) - left, 0)
                g0 = stats["groups"]
                ids = np.arange(g0, g0 + len(sizes), dtype=np.uint64)
                hashed = mix64(ids * np.uint64(4) + np.uint64(tag) + np.uint64(seed) * np.uint64(8))
                keys = [b"%016x" % k for k in hashed.tolist()]
                users = zipf_ranks(rng, len(sizes), num_users, 0.6)
                text, s = _skeleton_lines(
                    rng, sizes, keys, stats["impressions"] + 1, click_rate, cvr, anomaly_rate
                )
                sk.write(text)
                perm = rng.permutation(len(sizes))
                cm.write(_common_lines(users[perm], [keys[i] for i in perm], seed))
                stats["groups"] += len(sizes)
                for k in ("impressions", "clicks", "conversions", "anomalies"):
                    stats[k] += s[k]
        stats["skeleton"] = {"path": sk_path, "bytes": os.path.getsize(sk_path)}
        stats["common"] = {"path": cm_path, "bytes": os.path.getsize(cm_path)}
        out[split] = stats
    return out
