"""Orbax checkpoints: train state + Grain iterator state + config. The only Orbax importer.

A checkpoint at step N holds the state after N updates and the data iterator positioned at batch
N, so restoring it and continuing reproduces the uninterrupted run exactly. The state is restored
against abstract shapes carrying the target shardings, so it lands directly on the mesh.

Resuming (:meth:`Checkpointer.restore_newest`) tries the checkpoints newest first and uses the
newest that restores completely: config, state (params, optimizer, model state, step) and data
iterator. A checkpoint that fails (a deleted or truncated file, a missing iterator state) is
skipped with a line on stderr saying why, and once an older one restored, the skipped ones are
moved to ``<checkpoints>_unrestorable/`` (kept for inspection; the resumed run writes those
steps again). A checkpoint whose state has another structure than the config builds is not
corruption but a different model: that stops the resume with :class:`CheckpointMismatchError`.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import shutil
import sys
import types
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from mtl_jax.cli import UserError


class CheckpointMismatchError(UserError):
    """A checkpoint's state does not have the structure, shapes or dtypes the config builds."""


class NoRestorableCheckpointError(UserError):
    """Every checkpoint of a workdir failed to restore."""


@dataclasses.dataclass
class Restored:
    """The outcome of :meth:`Checkpointer.restore_newest`."""

    step: int
    state: Any
    config: dict
    skipped: list[tuple[int, str]]  # (step, why) of each newer checkpoint that failed


def failure_reason(exc: BaseException, limit: int = 400) -> str:
    """One short line for why a restore failed (Orbax and TensorStore messages run long).

    The deepest exception of the chain says it best: Orbax wraps TensorStore's "Requested byte
    range ... is not valid for value of size ..." in a generic "error while reading array".
    """
    while (exc.__cause__ or exc.__context__) is not None:
        exc = exc.__cause__ or exc.__context__
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _leaf_name(path) -> str:
    """A key path as Orbax names the array: ``opt_state.tx.inner_states.0.mu``."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return ".".join(parts)


def _shapes(tree) -> dict[str, tuple]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {_leaf_name(p): (tuple(x.shape), np.dtype(x.dtype).name) for p, x in leaves}


def _quiet_abandoned_reads() -> None:
    """Silences the reads a failed restore abandoned, then lets them finish.

    When one array of a checkpoint fails to read, Orbax abandons the reads of the others: their
    TensorStore callbacks later hit a closed asyncio loop ("RuntimeError: Event loop is closed")
    and their coroutines are collected unfinished, and each prints a traceback through
    ``sys.unraisablehook``. They say nothing about the checkpoint (the skipped line does), so
    exactly these are silenced; anything else still reaches the previous hook.
    """
    previous = sys.unraisablehook
    if not getattr(previous, "_mtl_jax_quiet", False):

        def hook(unraisable):
            exc, obj = unraisable.exc_value, unraisable.object
            if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
                return
            if isinstance(obj, types.CoroutineType) and "orbax" in obj.cr_code.co_filename:
                return
            previous(unraisable)

        hook._mtl_jax_quiet = True
        sys.unraisablehook = hook
    gc.collect()  # the abandoned coroutines go now, while the hook is in place


def _all_processes_agree(ok: bool) -> bool:
    """True only when ``ok`` on every process, so that all of them skip the same checkpoints."""
    if jax.process_count() == 1:
        return ok
    from jax.experimental import multihost_utils

    return bool(np.all(multihost_utils.process_allgather(np.array([ok], np.int32))))


class Checkpointer:
    def __init__(self, directory: str, *, max_to_keep: int = 3, async_save: bool = True):
        # Orbax's storage layer needs an absolute path; users pass e.g. ``--workdir runs/mmoe``.
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save
            ),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state, data_iter, config_json: str) -> None:
        args = {
            "state": ocp.args.StandardSave(state),
            "config": ocp.args.JsonSave(json.loads(config_json)),
        }
        if data_iter is not None:
            args["data"] = grain.checkpoint.CheckpointSave(data_iter)
        self.manager.save(step, args=ocp.args.Composite(**args), force=True)

    def restore(self, step: int, abstract_state, data_iter=None):
        """Restores the state (onto the shardings of ``abstract_state``) and the iterator."""
        args = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iter is not None:
            args["data"] = grain.checkpoint.CheckpointRestore(data_iter)
        restored = self.manager.restore(step, args=ocp.args.Composite(**args))
        return restored["state"]

    def restore_config(self, step: int) -> dict:
        restored = self.manager.restore(
            step, args=ocp.args.Composite(config=ocp.args.JsonRestore())
        )
        return restored["config"]

    def check_structure(self, step: int, abstract_state) -> None:
        """Raises :class:`CheckpointMismatchError` naming the first arrays that do not fit.

        Reads only the checkpoint's metadata; an unreadable one raises whatever Orbax raises.
        """
        path = epath.Path(self.directory) / str(step) / "state"
        stored = _shapes(ocp.StandardCheckpointHandler().metadata(path).tree)
        wanted = _shapes(abstract_state)
        # Parameters first: they say best what changed (the optimizer state follows them).
        order = lambda k: (not k.startswith("params."), k)
        problems = [
            f"{k}: checkpoint {stored[k][0]} {stored[k][1]}, config {wanted[k][0]} {wanted[k][1]}"
            for k in sorted(set(stored) & set(wanted), key=order)
            if stored[k] != wanted[k]
        ]
        problems += [
            f"{k} missing from the checkpoint" for k in sorted(set(wanted) - set(stored), key=order)
        ]
        problems += [
            f"{k} not built by the config" for k in sorted(set(stored) - set(wanted), key=order)
        ]
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise CheckpointMismatchError(
                f"{self.directory}/{step}: the checkpoint's state does not fit the model and "
                f"optimizer the config builds: {'; '.join(problems[:3])}{more}. A different "
                "model cannot continue from these checkpoints: use a new --workdir"
            )

    def restore_newest(self, abstract_state, data_iter=None, *, check_config=None):
        """Restores the newest checkpoint that restores completely; None if there is none.

        Args:
          abstract_state: shapes, dtypes and shardings of the state (``abstract_with_sharding``).
          data_iter: the Grain iterator whose state is restored with it.
          check_config: called as ``check_config(config, step)`` with each candidate's stored
            config before its arrays are read; whatever it raises stops the resume (a config
            refusal is no reason to try an older checkpoint).

        Returns:
          :class:`Restored`, or None when the directory has no checkpoint.

        Raises:
          NoRestorableCheckpointError: checkpoints exist but none restores; the message names
            each step and why.
          CheckpointMismatchError: a checkpoint's state has another structure than
            ``abstract_state``.
        """
        steps = self.all_steps()
        if not steps:
            return None
        skipped: list[tuple[int, str]] = []
        for step in reversed(steps):
            reason, config, state = None, None, None
            try:
                config = self.restore_config(step)
            except Exception as e:
                reason = failure_reason(e)
            if _all_processes_agree(reason is None):
                if check_config is not None:
                    check_config(config, step)
                try:
                    self.check_structure(step, abstract_state)
                    state = self.restore(step, abstract_state, data_iter)
                    if int(jax.device_get(state.step)) != step:
                        reason = f"holds the state of step {int(jax.device_get(state.step))}"
                except CheckpointMismatchError:
                    raise
                except Exception as e:
                    reason = failure_reason(e)
            elif reason is None:
                reason = "the config failed to restore on another process"
            if _all_processes_agree(reason is None):
                self._set_aside([s for s, _ in skipped])
                return Restored(step=step, state=state, config=config, skipped=skipped)
            reason = reason or "failed to restore on another process"
            _quiet_abandoned_reads()
            skipped.append((step, reason))
            print(f"checkpoint {self.directory}/{step} skipped: {reason}", file=sys.stderr)
        raise NoRestorableCheckpointError(
            f"{self.directory}: no checkpoint restores completely ("
            + "; ".join(f"step {s}: {why}" for s, why in skipped)
            + "). Remove the directory to train from scratch."
        )

    def _set_aside(self, steps: list[int]) -> None:
        """Moves unrestorable checkpoints out of the manager's directory (process 0), so the
        resumed run can write those steps again, and tells the manager."""
        if not steps:
            return
        if jax.process_index() == 0:
            aside = self.directory + "_unrestorable"
            os.makedirs(aside, exist_ok=True)
            for step in steps:
                target, n = os.path.join(aside, str(step)), 1
                while os.path.exists(target):
                    target, n = os.path.join(aside, f"{step}.{n}"), n + 1
                shutil.move(os.path.join(self.directory, str(step)), target)
                print(f"checkpoint step {step} moved to {target}", file=sys.stderr)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("mtl_jax: unrestorable checkpoints moved")
        self.manager.reload()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_with_sharding(abstract_state, shardings):
    """ShapeDtypeStructs that carry the target sharding of each leaf."""
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings
    )
