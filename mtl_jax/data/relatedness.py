"""The task-relatedness benchmark of the MMoE paper: two tasks whose correlation is a knob.

Ma, Zhao, Yi, Chen, Hong & Chi, "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts", KDD 2018, section 3.2, generates two regression tasks as follows:

1. Given the input dimension d, draw two orthogonal unit vectors u1, u2 ∈ R^d.
2. Given a scale constant c and a correlation score −1 ≤ p ≤ 1, set the weight vectors
   w1 = c·u1 and w2 = c·(p·u1 + √(1 − p²)·u2), so that cos(w1, w2) = p.
3. Draw an input x ∈ R^d with every element from N(0, 1).
4. Labels y_k = w_kᵀx + Σ_{i=1..m} sin(α_i·w_kᵀx + β_i) + ε_k, with ε_k ~ N(0, 0.01) independent
   and α_i, β_i given parameters that shape the sinusoids (the same for both tasks).
5. Repeat 3–4 until there is enough data.

Because the labels are non-linear in w_kᵀx, p is the cosine of the two tasks' linear parts, not
the Pearson correlation of the labels; ``label_correlation`` measures the latter (the paper reports
both). Settings (``RelatednessConfig``): d = 100, m = 10, c = 1, noise standard deviation 0.1
(variance 0.01) and α_i, β_i ~ N(0, 1) drawn once from ``shape_seed`` (fixed across seeds, so
the sinusoids are "given"); u1, u2, the inputs and the noise come from ``seed``, so every seed
draws its own data and models compared on one seed see the same rows.

``task_type="binary"`` turns each task into a click-like label: y_k ~ Bernoulli(σ(z_k)), with z_k
the noise-free target standardised by the mean and standard deviation of a 2^16-row calibration
sample of the same seed (so both tasks have the same scale whatever ``c`` and ``p``).

The truth is kept for the oracle metrics (``p_true``): the noise-free targets (regression, oracle
MSE = noise variance) or the probabilities σ(z_k) (binary, oracle AUC).

Batches are dense-only (no categorical field): ``dense`` [n, d] float32, ``labels`` [n, 2],
``p_true`` [n, 2], ``source`` [n] = 0.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from mtl_jax.data.schema import Schema

TASKS = ("y1", "y2")
TASK_TYPES = ("regression", "binary")
SPLITS = ("train", "val", "test")
_SPLIT_TAG = {"train": 1, "val": 2, "test": 3}
_CALIBRATION_ROWS = 1 << 16
_CALIBRATION_TAG = 9


@dataclasses.dataclass(frozen=True)
class RelatednessConfig:
    """The generator's settings (``config.data.relatedness``).

    Attributes:
      seed: seeds u1, u2, the inputs and the noise (each split its own stream).
      correlation: p, the cosine of the two tasks' weight vectors, in [−1, 1].
      num_train, num_val, num_test: rows per split.
      input_dim: d.
      num_sines: m, the number of sinusoids.
      scale: c, the norm of the weight vectors.
      noise_std: standard deviation of ε (the paper's N(0, 0.01) is a variance: 0.1).
      shape_seed: seeds α_i, β_i ~ N(0, 1), fixed across ``seed``.
      task_type: ``regression`` (the paper's) or ``binary``.
    """

    seed: int = 0
    correlation: float = 0.5
    num_train: int = 10_000
    num_val: int = 2_000
    num_test: int = 10_000
    input_dim: int = 100
    num_sines: int = 10
    scale: float = 1.0
    noise_std: float = 0.1
    shape_seed: int = 0
    task_type: str = "regression"

    def __post_init__(self):
        for name in ("seed", "shape_seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"config.data.relatedness.{name} must be an int >= 0, got {v!r}")
        for name, lo in (("num_train", 1), ("num_val", 1), ("num_test", 1), ("input_dim", 2)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(
                    f"config.data.relatedness.{name} must be an int >= {lo}, got {v!r}"
                )
        if isinstance(self.num_sines, bool) or not isinstance(self.num_sines, int):
            raise ValueError(
                f"config.data.relatedness.num_sines must be an int, got {self.num_sines!r}"
            )
        if self.num_sines < 0:
            raise ValueError(
                f"config.data.relatedness.num_sines must be >= 0, got {self.num_sines}"
            )
        p = float(self.correlation)
        if not -1.0 <= p <= 1.0:
            raise ValueError(f"config.data.relatedness.correlation must be in [-1, 1], got {p}")
        for name in ("scale", "noise_std"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"config.data.relatedness.{name} must be a number >= 0, got {v}")
        if self.task_type not in TASK_TYPES:
            raise ValueError(
                f"config.data.relatedness.task_type must be one of {TASK_TYPES}, "
                f"got {self.task_type!r}"
            )


def schema(cfg: RelatednessConfig) -> Schema:
    return Schema(
        categorical=(),
        dense=tuple(f"x{i}" for i in range(cfg.input_dim)),
        tasks=TASKS,
        task_types=(cfg.task_type,) * len(TASKS),
        has_p_true=True,
    )


def weight_vectors(cfg: RelatednessConfig) -> np.ndarray:
    """[2, d]: w1 = c·u1, w2 = c·(p·u1 + √(1 − p²)·u2) with orthogonal unit u1, u2."""
    rng = np.random.default_rng([cfg.seed, 0])
    g = rng.standard_normal((cfg.input_dim, 2))
    q, _ = np.linalg.qr(g)  # orthonormal columns: u1, u2
    u1, u2 = q[:, 0], q[:, 1]
    p = float(cfg.correlation)
    return cfg.scale * np.stack([u1, p * u1 + math.sqrt(max(0.0, 1.0 - p * p)) * u2])


def sine_params(cfg: RelatednessConfig) -> tuple[np.ndarray, np.ndarray]:
    """α [m], β [m] ~ N(0, 1), from ``shape_seed``."""
    rng = np.random.default_rng([cfg.shape_seed, 0xA1FA])
    return rng.standard_normal(cfg.num_sines), rng.standard_normal(cfg.num_sines)


def _targets(cfg: RelatednessConfig, x: np.ndarray) -> np.ndarray:
    """Noise-free targets [n, 2]: w_kᵀx + Σ_i sin(α_i w_kᵀx + β_i)."""
    alpha, beta = sine_params(cfg)
    z = x @ weight_vectors(cfg).T  # [n, 2]
    return z + np.sin(z[..., None] * alpha + beta).sum(-1)


def _standardisation(cfg: RelatednessConfig) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([cfg.seed, _CALIBRATION_TAG])
    t = _targets(cfg, rng.standard_normal((_CALIBRATION_ROWS, cfg.input_dim)))
    std = t.std(0)
    return t.mean(0), np.where(std > 0, std, 1.0)


def generate(cfg: RelatednessConfig, split: str) -> dict[str, np.ndarray]:
    """All rows of one split in the batch layout of ``schema.py``."""
    if split not in _SPLIT_TAG:
        raise ValueError(f"unknown split {split!r}; valid splits are {list(SPLITS)}")
    n = getattr(cfg, f"num_{split}")
    rng = np.random.default_rng([cfg.seed, _SPLIT_TAG[split]])
    x = rng.standard_normal((n, cfg.input_dim))
    target = _targets(cfg, x)
    if cfg.task_type == "regression":
        labels = target + cfg.noise_std * rng.standard_normal(target.shape)
        truth = target
    else:
        mean, std = _standardisation(cfg)
        truth = 1.0 / (1.0 + np.exp(-(target - mean) / std))
        labels = (rng.random(target.shape) < truth).astype(np.float64)
    return {
        "cat": np.zeros((n, 0), np.int32),
        "dense": x.astype(np.float32),
        "labels": labels.astype(np.float32),
        "p_true": truth.astype(np.float32),
        "source": np.zeros(n, np.int32),
    }


def label_correlation(cfg: RelatednessConfig, num_rows: int = 1 << 16) -> float:
    """Pearson correlation of the two tasks' labels (measured on fresh rows of the seed)."""
    rng = np.random.default_rng([cfg.seed, _CALIBRATION_TAG + 1])
    t = _targets(cfg, rng.standard_normal((num_rows, cfg.input_dim)))
    if cfg.task_type == "regression":
        y = t + cfg.noise_std * rng.standard_normal(t.shape)
    else:
        mean, std = _standardisation(cfg)
        y = (rng.random(t.shape) < 1.0 / (1.0 + np.exp(-(t - mean) / std))).astype(float)
    return float(np.corrcoef(y[:, 0], y[:, 1])[0, 1])
