"""What a resumed run may change, and the record of which config trained which steps.

Every checkpoint stores the config that trained up to it. When ``loop.train_and_evaluate``
resumes, :func:`check` compares that config with the one now given:

* keys in :data:`ALLOWED_CHANGES` only extend or observe the run (how long it runs, how often it
  logs, evaluates and checkpoints, how it evaluates and lays out devices) and may change freely;
* any other difference changes what is trained or on what data (model, data, loss, optim, seed,
  batch_size, compute_dtype, ...) and is refused with :class:`ConfigChangedError`, which names
  each key with its old and new value, before anything is written; ``allow_change``
  (``--allow_config_change``) accepts such a change deliberately, and the history records it.

The total number of steps (``num_steps``, or ``num_epochs`` × steps per epoch) may grow or shrink,
but never below the checkpoint's step. The data order does not depend on it (batch ``i`` is the
same batch whatever the total), and with ``optim.schedule = "constant"`` neither does the learning
rate. A decaying schedule (``warmup_cosine``, ``warmup_linear``) spreads its decay over the total,
so a new total changes the learning rate of every remaining step: that is a training change,
refused unless ``allow_change`` (the schedule then follows the new total from the restored step
on, so the learning rate jumps there).

``config_history.jsonl`` in the workdir has one line per span of steps trained under one config::

    {"start_step": 0, "time": "2025-...", "changed": {}, "outside_allow_list": [], "config": {...}}
    {"start_step": 120, "time": "2025-...", "changed": {"optim.learning_rate": [0.001, 0.01]},
     "outside_allow_list": ["optim.learning_rate"], "config": {...}}

``changed`` maps each dotted key that differs from the config of the checkpoint the span resumed
from to ``[old, new]`` (``"<absent>"`` for a key one of them lacks); ``outside_allow_list`` lists
those that needed ``allow_change``. ``config.json`` is the config now in force (the last line's).
"""

from __future__ import annotations

import datetime
import json
import os

from mtl_jax.cli import UserError
from mtl_jax.logs import write_atomic

# Dotted keys (a key covers its sub-keys: "mesh" covers "mesh.data") that a resumed run may
# change without --allow_config_change. tests/test_resume.py pins this list.
ALLOWED_CHANGES = (
    "num_steps",  # the total step count (see the module docstring for the schedule rule)
    "num_epochs",
    "log_every_steps",
    "eval_every_steps",
    "checkpoint_every_steps",
    "max_to_keep",
    "eval_batch_size",  # every row is still evaluated once
    "prefetch",  # the iterator state does not depend on it
    "metrics",  # metrics.top_n: what is reported, not what is trained
    "mesh",  # device layout: the state is resharded onto the new mesh on restore
)
HISTORY = "config_history.jsonl"
ABSENT = "<absent>"
_CONSTANT_SCHEDULES = ("constant",)


class ConfigChangedError(UserError):
    """A resume with a config that changes what is trained, without ``allow_change``."""


def is_allowed(key: str) -> bool:
    """Whether the dotted ``key`` is in :data:`ALLOWED_CHANGES` (or under one of its entries)."""
    return any(key == a or key.startswith(a + ".") for a in ALLOWED_CHANGES)


def as_dict(config) -> dict:
    """A ConfigDict as the JSON a checkpoint stores (tuples become lists)."""
    return json.loads(config.to_json_best_effort())


def flatten(tree: dict, prefix: str = "") -> dict:
    """Nested dicts → ``{"a.b": value}``; lists stay values."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def diff(old: dict, new: dict) -> dict[str, list]:
    """``{dotted key: [old, new]}`` for every key whose value differs (or exists on one side)."""
    a, b = flatten(old), flatten(new)
    return {
        k: [a.get(k, ABSENT), b.get(k, ABSENT)]
        for k in sorted(set(a) | set(b))
        if a.get(k, ABSENT) != b.get(k, ABSENT)
    }


def _short(value, limit: int = 60) -> str:
    text = json.dumps(value) if value != ABSENT else ABSENT
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check(
    old: dict,
    new: dict,
    *,
    step: int,
    old_total: int,
    new_total: int,
    allow_change: bool,
    workdir: str,
) -> tuple[dict[str, list], list[str]]:
    """Compares the checkpoint's config ``old`` (at ``step``) with ``new``.

    Args:
      old: the config stored in the checkpoint (``as_dict`` form).
      new: the config now given.
      step: the checkpoint's step.
      old_total, new_total: the total training steps under each config.
      allow_change: accept changes outside the allow-list (``--allow_config_change``).
      workdir: named in the messages.

    Returns:
      ``(changed, outside_allow_list)``: every differing key with ``[old, new]``, and the keys
      that needed ``allow_change`` (a changed total under a decaying schedule appears as
      ``"total_steps"``).

    Raises:
      ConfigChangedError: a change outside the allow-list without ``allow_change``.
      UserError: the new total step count is below ``step`` (never allowed).
    """
    changed = diff(old, new)
    outside = [k for k in changed if not is_allowed(k)]
    schedule = flatten(new).get("optim.schedule", "constant")
    if new_total != old_total:
        changed["total_steps"] = [old_total, new_total]
        if schedule not in _CONSTANT_SCHEDULES:
            outside.append("total_steps")
    if new_total < step:
        raise UserError(
            f"{workdir}: the checkpoint is at step {step} but the config now gives {new_total} "
            "steps in all (config.num_steps / config.num_epochs); a run cannot end before its "
            "checkpoint: raise the step count or use a new --workdir"
        )
    if outside and not allow_change:
        parts = []
        for k in outside:
            if k == "total_steps":
                parts.append(
                    f"total steps {old_total} -> {new_total} (the learning rate of "
                    f"optim.schedule={schedule!r} follows the total)"
                )
            else:
                parts.append(f"{k}: {_short(changed[k][0])} -> {_short(changed[k][1])}")
        raise ConfigChangedError(
            f"{workdir} holds a run at step {step} trained with a different config; these keys "
            f"change what is trained: {'; '.join(parts)}. Nothing was written. Resume with the "
            "run's own config (its config.json), start a new --workdir, or pass "
            "--allow_config_change to continue under the new config (recorded in "
            f"{HISTORY}). Keys that may change on resume: {', '.join(ALLOWED_CHANGES)}"
        )
    return changed, outside


def read_history(workdir: str) -> list[dict]:
    """The lines of ``config_history.jsonl`` (unreadable lines, e.g. a cut-short write, skipped)."""
    path = os.path.join(workdir, HISTORY)
    if not os.path.exists(path):
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def record(
    workdir: str,
    start_step: int,
    config: dict,
    *,
    checkpoint_config: dict | None,
    changed: dict | None = None,
    outside: list[str] | None = None,
) -> None:
    """Records that training from ``start_step`` on runs under ``config``.

    Lines of spans that started at or after ``start_step`` are dropped first: they never reached
    a checkpoint that is still used. A line is appended only when ``config`` differs from the
    span before it. A workdir from before this history gets a first line at step 0 with the
    checkpoint's config.
    """
    rows = [r for r in read_history(workdir) if r.get("start_step", 0) < start_step]
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    if not rows and start_step > 0 and checkpoint_config is not None:
        rows.append(
            {
                "start_step": 0,
                "time": now,
                "changed": {},
                "outside_allow_list": [],
                "config": checkpoint_config,
            }
        )
    if not rows or rows[-1].get("config") != config:
        rows.append(
            {
                "start_step": int(start_step),
                "time": now,
                "changed": changed or {},
                "outside_allow_list": list(outside or []),
                "config": config,
            }
        )
    write_atomic(
        os.path.join(workdir, HISTORY), "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    )
