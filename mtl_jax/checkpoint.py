"""Orbax checkpoints: train state + Grain iterator state + config. The only Orbax importer.

A checkpoint at step N holds the state after N updates and the data iterator positioned at batch
N, so restoring it and continuing reproduces the uninterrupted run exactly. The state is restored
against abstract shapes carrying the target shardings, so it lands directly on the mesh.
"""

from __future__ import annotations

import json
import os

import grain
import jax
import orbax.checkpoint as ocp


class Checkpointer:
    def __init__(self, directory: str, *, max_to_keep: int = 3, async_save: bool = True):
        # Orbax's storage layer needs an absolute path; users pass e.g. ``--workdir runs/mmoe``.
        self.manager = ocp.CheckpointManager(
            os.path.abspath(directory),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save
            ),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

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
